"""A factory line on one PostgreSQL ledger: boards/hour for 1, 2 and 3 station processes,
and the ledger's overhead per board.

Each station is the real `fleetdesk --ledger postgresql://... flash` CLI with its own data
dir (as on its own PC) and its own `fleetdesk boards virtual` emulator process, flashing
``--boards`` blank virtual boards at once with identity (minted in a local sandbox, waiting
for the board online). All stations start together; a station's rate is its boards over
its wall time. The ledger is a throwaway PostgreSQL server (tests/pg_server.py).

Ledger overhead per board: the ledger calls one board's run makes (start_run, board lock,
device lookup, one journal step per step the real runs journaled, finish, logs), timed
against the same PostgreSQL ledger (and a SQLite one, side by side) while the other
stations' share is idle; median over ``--samples`` boards.

Goals (issue 19): per-station rate with 3 stations >= 0.9 x the rate of 1; overhead < 20 ms.
On one machine the emulated boards of every station share its CPUs (a real line's boards
bring their own), so the ratio here also measures the emulators' CPU contention.

``--compare`` also runs each line with every station on its own SQLite ledger (what a line
did before), so the CPU contention of the emulators shows apart from the shared ledger.

Usage: .venv/bin/python bench/line.py [--boards 8] [--stations 1,2,3] [--samples 50] [--no-throttle] [--compare]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))
from flash_speed import bench_env, virtual_boards  # noqa: E402
from pg_server import PgServer  # noqa: E402
from station_overhead import start_sandbox  # noqa: E402


def cpu_times() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine (/proc/stat): how busy its cores were."""
    fields = [float(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)
    return sum(fields) - idle, sum(fields)


def children_cpu_s() -> float:
    """CPU seconds of this process's waited-for children (the stations, their workers, emulators)."""
    usage = os.times()
    return usage.children_user + usage.children_system


LAST_CPU: dict = {}


def run_line(n: int, boards: int, work: Path, ledger: str, bundle: Path, sandbox_dir: Path, base_env: dict,
             throttle: bool) -> list[tuple[float, int]]:
    """n stations at once; returns (wall seconds, PASS count) per station. ``LAST_CPU`` then
    holds how busy the machine's cores were during the run and the line's CPU seconds per board."""
    LAST_CPU["before"] = children_cpu_s()  # (not the firmware build's or an earlier line's CPU)
    with ExitStack() as stack:
        ports, envs = [], []
        for s in range(n):
            d = work / f"line{n}-station{s}"
            env = {**base_env, "FLEETDESK_DATA_DIR": str(d / "data")}
            if ledger:
                env["FLEETDESK_LEDGER"] = ledger
            ports.append(stack.enter_context(virtual_boards(boards, d, throttle=throttle, env=env)))
            envs.append(env)
        time.sleep(1.0)  # the emulators listen (their JSON line came first)
        busy0, total0 = cpu_times()
        procs, t0 = [], time.perf_counter()
        for s in range(n):
            cmd = [sys.executable, "-m", "fleetdesk", "flash", *ports[s], "--bundle", str(bundle), "--identity",
                   "--state-dir", str(sandbox_dir), "--station", f"line{n}-st{s}", "--json"]
            procs.append(subprocess.Popen(cmd, env=envs[s], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                          text=True))
        out = []
        for p in procs:
            stdout, stderr = p.communicate(timeout=1800)
            wall = time.perf_counter() - t0
            rows = [json.loads(x) for x in stdout.splitlines() if x.startswith("{")]
            passed = sum(r["result"] == "PASS" for r in rows)
            if passed != boards:
                fails = [r["error"] for r in rows if r["result"] != "PASS"]
                print(f"  warning: {boards - passed} boards failed: {fails[:2]} {stderr[-300:]}", file=sys.stderr)
            out.append((wall, passed))
        busy1, total1 = cpu_times()
        LAST_CPU["busy"] = (busy1 - busy0) / max(1.0, total1 - total0)
    LAST_CPU["cpu_s_per_board"] = (children_cpu_s() - LAST_CPU["before"]) / max(1, n * boards)
    return out


def ledger_overhead(target: str, samples: int, steps: int, key: Path) -> list[float]:
    """Milliseconds of ledger calls per board (one board's run replayed)."""
    from fleetdesk.store.production import ProductionDB

    db = ProductionDB(target, key_file=key)
    times = []
    try:
        for i in range(samples):
            mac = "24:6f:28:%02x:%02x:%02x" % (0xbe, i // 256, i % 256)
            t0 = time.perf_counter()
            run = db.start_run(station="bench", port=f"socket://x:{i}", slot=str(i))
            db.step(run, "detect", "begin")
            db.step(run, "detect", "done", {"chip": "ESP32", "mac": mac}, mac=mac)
            db.lock_board(mac, run, "bench")
            db.device(mac)
            for k in range(max(0, steps - 3)):
                db.step(run, ("identity", "write", "verify", "boot", "online")[k % 5], "done",
                        **({"thing": f"fd-{i}", "certificate_id": f"{i:064x}"} if k == 0 else {}))
            db.finish(run, {"station": "bench", "mac": mac, "thing": f"fd-{i}", "certificate_id": f"{i:064x}",
                            "result": "PASS", "duration_s": 9.0})
            db.save_logs(run, console=["boot", f"online as fd-{i}"], esptool=["Hash of data verified."])
            times.append((time.perf_counter() - t0) * 1000)
    finally:
        db.close()
    return times


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--boards", type=int, default=8, help="boards per station")
    ap.add_argument("--stations", default="1,2,3")
    ap.add_argument("--samples", type=int, default=50)
    ap.add_argument("--no-throttle", action="store_true", help="virtual boards as fast as the CPU allows")
    ap.add_argument("--compare", action="store_true", help="also each station on its own SQLite ledger")
    args = ap.parse_args()
    counts = [int(x) for x in args.stations.split(",")]
    with tempfile.TemporaryDirectory(prefix="fd-bench-line-") as tmp, ExitStack() as stack:
        work = Path(tmp)
        env = bench_env(work)
        env.pop("FLEETDESK_LEDGER", None)
        pg = PgServer()
        stack.callback(pg.stop)
        sandbox_dir = work / "sandbox"
        sb = start_sandbox(sandbox_dir, env)
        stack.callback(lambda: (sb.terminate(), sb.wait(20)))
        bundle = work / "bundle"
        subprocess.run([sys.executable, "-m", "fleetdesk", "firmware", "build", "-o", str(bundle)], check=True,
                       env=env, stdout=subprocess.DEVNULL)
        print(f"line bench: {args.boards} boards per station, {'un' if args.no_throttle else ''}throttled virtual "
              f"boards, {os.cpu_count()} CPUs")
        rates, steps = {}, 12
        for n in counts:
            if args.compare:
                alone = run_line(n, args.boards, work / "sqlite", "", bundle, sandbox_dir, env, not args.no_throttle)
                alone_rate = statistics.mean(p / w * 3600 for w, p in alone)
                print(f"  {n} station(s), each on its own SQLite: per station {alone_rate:7.1f} boards/h, "
                      f"{1 / LAST_CPU['cpu_s_per_board']:.2f} boards per CPU second")
            ledger = pg.create_db(f"line{n}")
            per = run_line(n, args.boards, work, ledger, bundle, sandbox_dir, env, not args.no_throttle)
            station_rates = [passed / wall * 3600 for wall, passed in per]
            rates[n] = statistics.mean(station_rates)
            from fleetdesk.store.ledger import Ledger

            real = Ledger(ledger)
            steps = round(real.scalar("SELECT COUNT(*) * 1.0 / COUNT(DISTINCT run_id) AS n FROM journal") or steps)
            real.close()
            print(f"  {n} station(s): per station {rates[n]:7.1f} boards/h "
                  f"(walls {', '.join(f'{w:.1f}s' for w, _ in per)}), line {sum(station_rates):7.1f} boards/h; "
                  f"machine cores busy {LAST_CPU['busy']:.0%} of {os.cpu_count()}, "
                  f"{LAST_CPU['cpu_s_per_board']:.2f} CPU s per board = {1 / LAST_CPU['cpu_s_per_board']:.2f} boards "
                  f"per CPU second (stations, workers, emulators)")
        if 1 in rates:
            for n in counts:
                if n != 1:
                    print(f"  per-station rate {n} vs 1: {rates[n] / rates[1]:.2f} (goal >= 0.9)")
        pg_ms = ledger_overhead(pg.create_db("overhead"), args.samples, steps, work / "k")
        sq_ms = ledger_overhead(str(work / "overhead.sqlite3"), args.samples, steps, work / "k")
        print(f"  ledger overhead per board ({steps} journal steps, as the real runs made): PostgreSQL median {statistics.median(pg_ms):.1f} ms"
              f" (p90 {sorted(pg_ms)[int(len(pg_ms) * 0.9)]:.1f}), SQLite median {statistics.median(sq_ms):.1f} ms"
              f" (goal < 20 ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
