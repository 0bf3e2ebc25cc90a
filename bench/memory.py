"""Memory bench: RSS with 1,000 devices x 24 h of telemetry history loaded (goal < 600 MB).

1. Builds a telemetry database (fleetdesk.store.telemetry, the app's own store) with
   DEVICES things x 24 h of DHT11 samples at the firmware's default period (10 s -> 8,640
   samples per device), through the normal batched insert path.
2. In a fresh child process, side by side: the floor (python + numpy + fleetdesk imported,
   nothing loaded) and then the app's data for the whole fleet loaded: the fleet model
   (FleetState with every thing, seeded from the store) plus every device's 24 h history
   as the numpy arrays the Device page charts use. Prints RSS of both, the raw size of the
   arrays, goal, ratio to goal, and PASS/FAIL.

Usage: .venv/bin/python bench/memory.py [--devices 1000] [--hours 24] [--period 10]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GOAL_MB = 600.0
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def build(db: Path, devices: int, hours: float, period: float) -> tuple[int, float]:
    from fleetdesk.store.telemetry import Sample, TelemetryStore

    import math

    now = time.time()
    n = int(hours * 3600 / period)
    start = now - n * period
    t0 = time.perf_counter()
    with TelemetryStore(db, retention_days=None) as store:
        batch: list = []
        for d in range(devices):
            name = f"sim-{d:04d}"
            for i in range(n):
                ts = start + i * period
                batch.append(Sample(name, ts, round(21 + 3 * math.sin(ts / 3600 + d), 1),
                                    round(45 + 10 * math.cos(ts / 5400 + d), 1), i))
            if len(batch) >= 200_000:
                store.insert_many(batch)
                batch = []
        if batch:
            store.insert_many(batch)
        total = store.count()
    return total, time.perf_counter() - t0


CHILD = r"""
import json, sys, time
sys.path.insert(0, {root!r})
from bench.memory import rss_mb
import numpy
from fleetdesk.cloud.fleet_state import FleetState
from fleetdesk.store.telemetry import TelemetryStore
floor = rss_mb()
t0 = time.perf_counter()
store = TelemetryStore({db!r}, retention_days=None)
fleet = FleetState()
fleet.apply_registry({{"thingName": n, "attributes": {{"room": "r%d" % i}}}} for i, n in enumerate(store.things()))
for name, s in store.latest().items():
    fleet.apply_sample(s)
since = time.time() - {hours} * 3600 - 60
history = {{name: store.arrays(name, since=since) for name in store.things()}}
load_s = time.perf_counter() - t0
raw = sum(a.nbytes for arrs in history.values() for a in arrs)
points = sum(len(arrs[0]) for arrs in history.values())
print(json.dumps({{"floor_mb": floor, "loaded_mb": rss_mb(), "raw_mb": raw / 2**20, "points": points,
                   "things": len(fleet.things), "load_s": load_s}}))
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--hours", type=float, default=24.0)
    ap.add_argument("--period", type=float, default=10.0, help="seconds between samples (firmware default 10)")
    args = ap.parse_args()
    root = str(Path(__file__).resolve().parent.parent)
    with tempfile.TemporaryDirectory(prefix="fd-memory-") as tmp:
        db = Path(tmp) / "telemetry.sqlite3"
        total, build_s = build(db, args.devices, args.hours, args.period)
        print(f"built {total:,} samples ({args.devices} devices x {args.hours:g} h @ {args.period:g} s) "
              f"in {build_s:.1f} s ({total / build_s:,.0f} rows/s stored); db {db.stat().st_size / 2**20:.0f} MB")
        code = CHILD.format(root=root, db=str(db), hours=args.hours)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root,
                             env={**os.environ, "PYTHONPATH": root})
        if out.returncode:
            print(out.stderr[-3000:], file=sys.stderr)
            return 1
        r = json.loads(out.stdout.strip().splitlines()[-1])
    from verdict import print_goal  # bench/ (this script's folder); the child imports bench.memory without it

    ok = r["loaded_mb"] < GOAL_MB
    print(f"floor (python + numpy + fleetdesk, nothing loaded): {r['floor_mb']:.0f} MB RSS")
    print(f"loaded: {r['things']} things in the fleet model + {r['points']:,} history points "
          f"(arrays {r['raw_mb']:.0f} MB) in {r['load_s']:.1f} s")
    print_goal(f"RSS < {GOAL_MB:.0f} MB", f"{r['loaded_mb']:.0f} MB RSS ({r['loaded_mb'] - r['floor_mb']:.0f} MB "
               "above the floor)", ok, r["loaded_mb"] / GOAL_MB)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
