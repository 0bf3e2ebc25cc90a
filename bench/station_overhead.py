"""Station overhead: what the pipeline adds per board (identity in the sandbox, journal,
pre-write checks, device files in the vfs image, production row), next to the write itself.

Side by side on throttled virtual boards at 460800 baud with the default bundle; each run takes
two blank boards, as a production line does (the DB has never seen their MACs): one is flashed
bare, the other through the pipeline:
  bare   = a plain flash of the bundle (connect, stub, write + verify, reset)
  full   = the station pipeline with identity on (a board the station has not seen before: a new
           thing + certificate, journal, checks, /config.json + /certs in the vfs image, attempt
           row), not waiting for presence
Overhead = full - bare (medians), and, measured inside the pipeline, the time from the
identity step's start (the worker is connected, before the stub upload) to the write's start
(journal timestamps).

Goal: overhead < 10 % of the bare write time. The default bundle's app is a few hundred bytes,
so its write is mostly connect + stub + the vfs image; ``--bundle large-app`` measures the
same against a 1.4 MB app (the size of a real MicroPython build, as in flash_speed.py).

Usage: .venv/bin/python bench/station_overhead.py [--runs N] [--bundle default|large-app]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from flash_speed import BUNDLES, bench_workdir, bundle_plan, virtual_boards  # noqa: E402

from fleetdesk.sandbox.child import stop_sandbox

GOAL = 0.10


def start_sandbox(state_dir: Path, env: dict) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "fleetdesk", "sandbox", "up", "--json", "--state-dir",
                             str(state_dir), "--port-base", "0"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=env)
    json.loads(proc.stdout.readline())
    return proc


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--baud", type=int, default=460800)
    ap.add_argument("--bundle", choices=BUNDLES, default="default")
    ap.add_argument("--journal", action="store_true", help="print the last run's journal with relative times")
    args = ap.parse_args()
    with bench_workdir() as (work, env):
        from fleetdesk.boards.flasher import POOL, FlashJob
        from fleetdesk.boards.identity import CloudTarget
        from fleetdesk.boards.station import Station, StationSettings
        from fleetdesk.store.production import ProductionDB

        bundle, plan = bundle_plan(work, env, args.bundle)
        sandbox = start_sandbox(work / "sandbox", env)
        try:
            cloud = CloudTarget.from_sandbox(work / "sandbox")
            db = ProductionDB(work / "prod.sqlite3")
            settings = StationSettings(bundle=str(bundle), baud=args.baud, identity=True, wait_online=False,
                                       boot_wait=0.0, factory_reset=True)
            station = Station(settings, cloud=cloud, db=db)
            bare, full, inner = [], [], []
            POOL.prewarm(1)
            # blank boards, as on a production line (the DB has never seen their MACs): each run
            # flashes one blank board bare and another blank board through the whole pipeline
            with virtual_boards(2 * args.runs, work, env=env) as boards:
                for bare_port, port in zip(boards[0::2], boards[1::2]):
                    time.sleep(2)
                    t0 = time.perf_counter()
                    r = FlashJob(bare_port, plan, baud=args.baud, prepare=lambda info: plan).run()
                    bare.append(time.perf_counter() - t0)
                    assert r.ok, r.error
                    time.sleep(2)
                    t0 = time.perf_counter()
                    res = station.run_one(port)
                    full.append(time.perf_counter() - t0)
                    assert res.result == "PASS", res.error
                    steps = {(j["step"], j["status"]): j["ts"] for j in db.journal(res.run_id)}
                    inner.append(steps[("write", "begin")] - steps[("identity", "begin")])
                    if args.journal and port == boards[-1]:
                        print(f"  board identity read: {res.board_identity}")
                        rows = db.journal(res.run_id)
                        for j in rows:
                            print(f"  +{j['ts'] - rows[0]['ts']:6.3f} s  {j['step']:9} {j['status']:9} "
                                  f"{(j['detail'] or '')[:90]}")
            POOL.close()
            station.close()
        finally:
            stop_sandbox(sandbox, 15)
        b, f, i = statistics.median(bare), statistics.median(full), statistics.median(inner)
        over = max(0.0, f - b)
        ratio = over / b
        ok = ratio < GOAL
        print(f"goal: pipeline overhead per board < {GOAL:.0%} of the write time "
              f"({args.bundle} bundle {plan.total_bytes / 1e6:.2f} MB, {args.baud} baud, medians of {args.runs})")
        print(f"bare flash {b:.2f} s   full pipeline {f:.2f} s   overhead {over:.3f} s = {ratio:.1%}   "
              f"{'PASS' if ok else 'FAIL'}")
        print(f"identity begin -> write begin (journal timestamps; includes the stub upload and baud change the "
              f"bare flash also pays, then the board identity probe and the mint): {i:.3f} s (info)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
