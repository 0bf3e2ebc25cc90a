"""Batch BLE setup bench: wall time to provision 10 virtual boards from one sheet
(`fleetdesk.ble.batch`, 10 at once) against one board alone. Goal: 10 boards <= 3x one board.

Each board is the real firmware in Config mode under the MicroPython unix port, reached
through the virtual bleak backend; things and certificates are made in a local sandbox. Both
figures are measured in this run, side by side.

    .venv/bin/python bench/ble_batch.py [--boards 10] [--parallel 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from verdict import print_goal  # noqa: E402

GOAL_RATIO = 3.0
NETS = {"fieldnet": "secret123"}


def _ble(mac: str) -> str:
    raw = bytearray(bytes.fromhex(mac))
    raw[5] = (raw[5] + 2) & 0xFF
    return ":".join(f"{b:02X}" for b in raw)


def start_boards(tmp: Path, macs: list[str]):
    from fleetdesk.boards.bundle import firmware_files
    from fleetdesk.virtual.runtime import launch_firmware, write_board_fs

    files = firmware_files()
    handles, consoles = [], []
    for mac in macs:
        fs = write_board_fs(tmp / f"vfs-{mac}", files, {"pop": f"pop-{mac}"})
        buf = bytearray()
        consoles.append(buf)
        handles.append(launch_firmware(fs, mac=mac, chip="esp32", console=buf.extend,
                                       env={"FD_WIFI_NETWORKS": json.dumps(NETS)}))
    deadline = time.monotonic() + 120
    while not all(b"waiting for BLE provisioning" in bytes(c) for c in consoles):
        if time.monotonic() > deadline:
            raise SystemExit("boards did not reach Config mode in 120 s")
        time.sleep(0.1)
    return handles


def run(tmp: Path, profile, macs: list[str], parallel: int) -> tuple[float, int]:
    from fleetdesk.ble.batch import load_batch, run_batch

    sheet = tmp / f"sheet-{len(macs)}.csv"
    sheet.write_text("address,pop,wifi_ssid,wifi_password\n" +
                     "".join(f"{_ble(m)},pop-{m},fieldnet,secret123\n" for m in macs))
    rows = load_batch(sheet)
    handles = start_boards(tmp, macs)
    try:
        t0 = time.monotonic()
        asyncio.run(run_batch(rows, profile, parallel=parallel, kind="virtual"))
        wall = time.monotonic() - t0
    finally:
        for h in handles:
            h.stop()
    bad = [r for r in rows if r.state != "done"]
    for r in bad:
        print(f"  line {r.row}: {r.state} {r.reason}")
    return wall, len(rows) - len(bad)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--boards", type=int, default=10)
    ap.add_argument("--parallel", type=int, default=10)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ble-batch-"))
    os.environ["FLEETDESK_DATA_DIR"] = str(tmp / "data")
    os.environ["FLEETDESK_CONFIG_DIR"] = str(tmp / "cfg")
    os.environ["FLEETDESK_BLE_REGISTRY"] = str(tmp / "registry")
    from fleetdesk.config import Profile
    from fleetdesk.sandbox.child import start_sandbox, stop_sandbox

    proc, info = start_sandbox(tmp / "sandbox")
    try:
        profile = Profile(name="bench", kind="sandbox", state_dir=str(info.state_dir))
        one, ok1 = run(tmp, profile, ["240ac4c00001"], 1)
        many, okn = run(tmp, profile, [f"240ac4c1{i:02x}01" for i in range(args.boards)], args.parallel)
    finally:
        stop_sandbox(proc)
    ratio = many / one
    passed = ok1 == 1 and okn == args.boards and ratio <= GOAL_RATIO
    print(f"batch BLE setup, virtual boards (firmware under MicroPython), {os.cpu_count()} cores")
    print(f"{'boards':>6} {'parallel':>8} {'done':>5} {'wall s':>7} {'s/board':>8}")
    print(f"{1:>6} {1:>8} {ok1:>5} {one:>7.2f} {one:>8.2f}")
    print(f"{args.boards:>6} {args.parallel:>8} {okn:>5} {many:>7.2f} {many / args.boards:>8.2f}")
    print_goal(f"{args.boards} boards <= {GOAL_RATIO:.0f}x one board", f"{many:.2f} s vs {one:.2f} s", passed, ratio)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
