"""Flash speed: the station's flash of a bundle vs the esptool CLI `write-flash` of the same
files, on the same throttled virtual board at the same baud (460800), side by side.

Both sides start a process, connect, upload the stub, switch baud, write with compression
and MD5-verify every part, then reset. Runs alternate (app, CLI, app, CLI, ...) and medians
are compared. Two bundles: the default `fleetdesk firmware build` output, and the same with a
1.4 MB app image (the size of a real MicroPython build) so the line rate dominates.

Goal: app / CLI <= 1.05.

Usage: .venv/bin/python bench/flash_speed.py [--runs N] [--baud 460800]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
GOAL = 1.05
EMULATORS: list[int] = []  # pids of the virtual-board processes (for CPU accounting)


def cpu_seconds(pids) -> float:
    """user+system CPU of processes and their descendants so far (Linux /proc; 0 elsewhere)."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    for pid in pids:
        try:
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            total += sum(int(x) for x in fields[11:15]) / tick  # utime stime cutime cstime
        except (OSError, IndexError, ValueError):
            pass
    return total


def bench_env(work: Path) -> dict:
    """The environment of a bench run: data and config under ``work`` (this process too), the rest inherited."""
    env = {**os.environ, "FLEETDESK_DATA_DIR": str(work / "data"), "FLEETDESK_CONFIG_DIR": str(work / "cfg")}
    os.environ.update(env)
    return env


@contextlib.contextmanager
def virtual_boards(count: int, workdir: Path, throttle: bool = True, env: dict | None = None):
    """Run `fleetdesk boards virtual --count N` (one process); yields the list of port URLs."""
    cmd = [sys.executable, "-m", "fleetdesk", "boards", "virtual", "--count", str(count), "--json",
           "--state-dir", str(workdir / "boards")]
    if not throttle:
        cmd.append("--no-throttle")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        boards = json.loads(proc.stdout.readline())
        EMULATORS.append(proc.pid)
        yield [b["port"] for b in boards]
    finally:
        from fleetdesk.process import stop_child

        stop_child(proc, 20)


@contextlib.contextmanager
def bench_workdir():
    """A bench run's temporary folder and its environment (:func:`bench_env`); removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="fd-bench-") as tmp:
        work = Path(tmp)
        yield work, bench_env(work)


def bundle_plan(workdir: Path, env: dict, name: str):
    """The bundle ``name`` (one of :data:`BUNDLES`) built in ``workdir`` and its loaded FlashPlan."""
    from fleetdesk.boards.images import load_plan

    path = build_bundles(workdir, env)[name]
    return path, load_plan(path)


BUNDLES = ("default", "large-app")


def build_bundles(workdir: Path, env: dict) -> dict[str, Path]:
    """The default bundle and one with a 1.4 MB app image."""
    default = workdir / "bundle-default"
    subprocess.run([sys.executable, "-m", "fleetdesk", "firmware", "build", "-o", str(default)], check=True,
                   env=env, stdout=subprocess.DEVNULL)
    large = workdir / "bundle-large-app"
    shutil.copytree(default, large)
    from fleetdesk.boards import appimage

    rnd = random.Random(7)
    words = [bytes(rnd.getrandbits(8) for _ in range(rnd.randint(2, 12))) for _ in range(4000)]
    payload = bytearray()
    while len(payload) < 1_400_000:  # machine-code-like: ~60 % compressible
        payload += rnd.choice(words) if rnd.random() < 0.7 else bytes(rnd.getrandbits(8) for _ in range(8))
    (large / "app.bin").write_bytes(appimage.build_image("esp32", bytes(payload[:1_400_000])))
    return {"default": default, "large-app": large}


def app_flash(port: str, plan, baud: int, warm: bool = True) -> float:
    from fleetdesk.boards.flasher import POOL, FlashJob

    if warm:
        POOL.prewarm(1)  # a station keeps a warm worker per slot
        time.sleep(1.5)  # the operator swaps the board meanwhile; the spare is ready
    else:
        POOL.close()
    t0 = time.perf_counter()
    r = FlashJob(port, plan, baud=baud, prepare=lambda info: plan).run()
    dt = time.perf_counter() - t0
    if not r.ok:
        raise SystemExit(f"app flash failed: {r.error}")
    return dt


def cli_flash(port: str, plan, baud: int, env: dict) -> float:
    args = []
    for p in plan.parts:
        args += [hex(p.offset), str(plan.source / p.name)]
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "esptool", "--port", port, "--baud", str(baud), "write-flash",
                           *args], env=env, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"esptool CLI failed: {proc.stdout[-500:]} {proc.stderr[-500:]}")
    return dt


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--baud", type=int, default=460800)
    args = ap.parse_args()
    from fleetdesk.boards.images import load_plan

    ok = True
    with tempfile.TemporaryDirectory(prefix="fd-bench-") as tmp:
        work = Path(tmp)
        env = bench_env(work)
        bundles = build_bundles(work, env)
        print(f"goal: station flash / esptool CLI write-flash <= {GOAL} (same throttled virtual board, "
              f"{args.baud} baud, medians of {args.runs})")
        with virtual_boards(1, work, env=env) as (port,):
            for name, path in bundles.items():
                plan = load_plan(path)
                app_t, cli_t = [], []
                for _ in range(args.runs):
                    app_t.append(app_flash(port, plan, args.baud))
                    cli_t.append(cli_flash(port, plan, args.baud, env))
                a, c = statistics.median(app_t), statistics.median(cli_t)
                ratio = a / c
                passed = ratio <= GOAL
                ok &= passed
                print(f"{name:10} {plan.total_bytes / 1e6:5.2f} MB: station {a:6.2f} s   esptool CLI {c:6.2f} s   "
                      f"ratio {ratio:.3f}   {'PASS' if passed else 'FAIL'}")
                if name == "default":  # the same without the slot's warm worker (first board of a run)
                    cold = statistics.median([app_flash(port, plan, args.baud, warm=False) for _ in range(args.runs)])
                    print(f"{'':10} cold worker (no spare): station {cold:6.2f} s   ratio {cold / c:.3f} (info)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
