"""Startup bench: process start -> main window shown, next to the PySide6 import floor.

Runs `python -m fleetdesk gui` with FLEETDESK_EXIT_WHEN_SHOWN=1 (the app prints a marker once
the window is shown, then quits without starting the sandbox) and, side by side in the same
run, `python -c "import PySide6.QtWidgets"`. Each is run N times (default 5); medians are
compared. Wall time is measured here, from just before the process is spawned to the
moment the marker line arrives (or the floor process exits).

Usage: .venv/bin/python bench/startup.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

from verdict import print_load_and_result

GOAL_S = 1.5
MARKER = "FLEETDESK_WINDOW_SHOWN"


def time_window(env: dict) -> float:
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "fleetdesk", "gui"], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        for line in proc.stdout:
            if line.startswith(MARKER):
                elapsed = time.perf_counter() - t0
                break
        else:
            raise SystemExit(f"the app exited (code {proc.wait()}) without showing its window")
    finally:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return elapsed


def time_floor(env: dict) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import PySide6.QtWidgets"], env=env, check=True)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            **os.environ,
            "FLEETDESK_EXIT_WHEN_SHOWN": "1",
            "FLEETDESK_DATA_DIR": os.path.join(tmp, "data"),
            "FLEETDESK_CONFIG_DIR": os.path.join(tmp, "config"),
            "FLEETDESK_SANDBOX_DIR": os.path.join(tmp, "sandbox"),
        }
        if not env.get("DISPLAY"):
            env["QT_QPA_PLATFORM"] = "offscreen"
        time_floor(env)  # warm the page cache for both
        time_window(env)
        windows, floors = [], []
        for _ in range(args.runs):  # interleaved: both see the same machine load
            floors.append(time_floor(env))
            windows.append(time_window(env))
    win, floor = statistics.median(windows), statistics.median(floors)
    ok = win < GOAL_S
    print("bench: startup (process start -> main window shown)")
    print(f"  goal:   window shown < {GOAL_S:.2f} s")
    print(f"  window: median {win:.3f} s over {args.runs} runs (min {min(windows):.3f}, max {max(windows):.3f})")
    print(f"  floor:  `import PySide6.QtWidgets` median {floor:.3f} s")
    print(f"  ratio:  window / floor = {win / floor:.2f}x")
    return print_load_and_result(ok, 8)


if __name__ == "__main__":
    sys.exit(main())
