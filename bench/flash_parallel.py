"""Parallel flashing: 16 throttled virtual boards at once vs 1 board, wall time, same bundle.

The station flashes each board in its own esptool worker process (warm spare per slot, as
the Stations page keeps them). `fleetdesk boards virtual` processes serve the boards at the
real line rate (460800 baud); --procs spreads them over several emulator processes, since a
real board brings its own CPU while emulated ones share this machine's. Measured side by
side in one run: first one board alone, then all 16 together (START ALL).

Goal: wall(16) / wall(1) <= 1.3.

``--pipeline`` runs the whole station pipeline instead of a bare flash, with every check on
(identity minted in a local sandbox, the board's identity read first, journal, attempt rows;
not waiting for presence), each board blank as on a production line: one board alone, then 16
other blank boards at once.

Usage: .venv/bin/python bench/flash_parallel.py [--boards 16] [--bundle default|large-app] [--pipeline]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from flash_speed import BUNDLES, EMULATORS, bench_workdir, bundle_plan, cpu_seconds, virtual_boards  # noqa: E402
from verdict import print_goal  # noqa: E402

GOAL = 1.3


def flash_all(ports, plan, baud: int) -> tuple[float, list]:
    from fleetdesk.boards.flasher import FlashJob

    results = [None] * len(ports)

    def one(i, port):
        results[i] = FlashJob(port, plan, baud=baud, prepare=lambda info: plan).run()

    threads = [threading.Thread(target=one, args=(i, p)) for i, p in enumerate(ports)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    failed = [r.error for r in results if not r.ok]
    if failed:
        raise SystemExit(f"{len(failed)} boards failed: {failed[:3]}")
    return wall, results


def station_all(station, ports) -> tuple[float, list]:
    t0 = time.perf_counter()
    results = station.run_many(list(ports))
    wall = time.perf_counter() - t0
    failed = [r.error for r in results if r.result != "PASS"]
    if failed:
        raise SystemExit(f"{len(failed)} boards failed: {failed[:3]}")
    return wall, results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--boards", type=int, default=16)
    ap.add_argument("--baud", type=int, default=460800)
    ap.add_argument("--bundle", choices=BUNDLES, default="large-app")
    ap.add_argument("--procs", type=int, default=4, help="emulator processes the boards are spread over")
    ap.add_argument("--pipeline", action="store_true", help="the station pipeline with identity and all checks")
    args = ap.parse_args()
    from fleetdesk.boards.flasher import POOL

    with bench_workdir() as (work, env):
        bundle_path, plan = bundle_plan(work, env, args.bundle)
        print(f"goal: wall time of {args.boards} boards at once / 1 board <= {GOAL}, "
              f"{'station pipeline with identity and all checks' if args.pipeline else 'bare flash'} "
              f"({args.bundle} bundle {plan.total_bytes / 1e6:.2f} MB, throttled virtual boards in {args.procs} "
              f"emulator processes, {args.baud} baud, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f})")
        with contextlib.ExitStack() as stack:
            ports = []
            total = args.boards + (1 if args.pipeline else 0)  # the pipeline's single run gets its own blank board
            per = -(-total // args.procs)
            for i in range(args.procs):
                n = min(per, total - len(ports))
                if n > 0:
                    sub = work / f"emu{i}"
                    sub.mkdir()
                    ports += stack.enter_context(virtual_boards(n, sub, env=env))
            run = lambda ps: flash_all(ps, plan, args.baud)  # noqa: E731
            if args.pipeline:
                from fleetdesk.boards.identity import CloudTarget
                from fleetdesk.boards.station import Station, StationSettings
                from fleetdesk.store.production import ProductionDB
                from station_overhead import start_sandbox

                sandbox = start_sandbox(work / "sandbox", env)
                stack.callback(lambda: (sandbox.terminate(), sandbox.wait(15)))
                settings = StationSettings(bundle=str(bundle_path), baud=args.baud, identity=True,
                                           wait_online=False, boot_wait=0.0)
                station = Station(settings, cloud=CloudTarget.from_sandbox(work / "sandbox"),
                                  db=ProductionDB(work / "prod.sqlite3"))
                single, ports = ports[:1], ports[1:]
                run = lambda ps: station_all(station, ps)  # noqa: E731
            else:
                single = ports[:1]
            POOL.prewarm(args.boards)
            time.sleep(max(3.0, args.boards * 0.8))  # spares import esptool (the station does this at lock time)
            one, _ = run(single)
            time.sleep(max(3.0, args.boards * 0.8))
            import resource

            emu0 = cpu_seconds(EMULATORS)
            own0 = resource.getrusage(resource.RUSAGE_SELF)
            kids0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            many, _ = run(ports)
            time.sleep(1.0)  # let the workers be reaped so their CPU is counted
            own1 = resource.getrusage(resource.RUSAGE_SELF)
            kids1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            station_cpu = (own1.ru_utime + own1.ru_stime - own0.ru_utime - own0.ru_stime
                           + kids1.ru_utime + kids1.ru_stime - kids0.ru_utime - kids0.ru_stime)
            emu_cpu = cpu_seconds(EMULATORS) - emu0
            POOL.close()
        ratio = many / one
        ok = print_goal(f"{args.boards} boards at once <= {GOAL}x one board",
                        f"1 board: {one:.2f} s, {args.boards} boards: {many:.2f} s", ratio <= GOAL, ratio)
        print(f"throughput: {args.boards * 3600 / many:.0f} boards/hour with {args.boards} slots")
        print(f"CPU during the {args.boards}-board run: station (app + esptool workers) {station_cpu:.1f} s, "
              f"board emulators + booted firmware {emu_cpu:.1f} s, on {os.cpu_count()} CPUs over {many:.1f} s wall")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
