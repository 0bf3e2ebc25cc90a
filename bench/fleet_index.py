"""Fleet index at scale: what the Fleet page costs with 1,000 and with 100,000 things.

For each size: a fresh sandbox is filled through a bulk path (registry and shadow rows
written straight into its SQLite files while it is stopped: creating 100,000 things over the
API would take most of an hour here), indexing is turned on (the sandbox rebuilds its index:
timed), then the app's own fleet-index client (``fleetdesk.cloud.fleet_index``, what the Fleet
page runs) loads the first page + tiles, changes the filter, and pages on, with quotas on.
The client side runs in a child process per size, so its RSS is the app's share.

Prints one table with the sizes side by side. Goals (issue 18): first page < 1 s, a filter
change < 300 ms, the client's RSS with 100,000 within 50 MB of the same with 1,000.

Usage:
    .venv/bin/python bench/fleet_index.py [--things 1000,100000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fleetdesk.sandbox.child import start_sandbox, stop_sandbox  # noqa: E402


def bulk_fill(state: Path, n: int) -> None:
    """Write n things with attributes and classic shadows straight into a stopped sandbox's files."""
    from fleetdesk.sandbox.shadow_doc import Shadow

    now = time.time()
    reg = sqlite3.connect(str(state / "registry.sqlite"))
    with reg:
        reg.executemany("INSERT INTO things VALUES (?,?,?,?,?,?)", [
            (f"esp-{i:06d}", str(uuid.uuid4()), None,
             json.dumps({"site": f"site-{i % 50}", "model": "esp32" if i % 4 else "esp8266"}), 1, now)
            for i in range(n)])
    reg.close()
    sh = sqlite3.connect(str(state / "shadows.db"))
    rows = []
    for i in range(n):
        reported = {"temperature": 15 + (i % 200) / 10, "humidity": 30 + i % 50,
                    "firmware_version": ("1.0.0", "1.1.0", "1.2.0")[i % 3]}
        s = Shadow(f"esp-{i:06d}", "", reported=reported,
                   metadata={"desired": {}, "reported": {k: {"timestamp": int(now)} for k in reported}},
                   version=1, timestamp=int(now), exists=True)
        rows.append((s.thing, "", s.to_json(), 1))
    with sh:
        sh.executemany("INSERT INTO shadows(thing, name, doc, exists_) VALUES (?,?,?,?)", rows)
    sh.close()


CLIENT = r"""
import json, statistics, sys, time
import boto3
from fleetdesk.cloud.fleet_index import FleetIndex, filter_query
kw = json.loads(sys.argv[1]); repeat = int(sys.argv[2])
idx = FleetIndex(boto3.client("iot", **kw))
def timed(fn):
    out = []
    for k in range(repeat):  # each run a query not asked before (the index keeps nothing per query across writes
        t = time.perf_counter(); fn(k); out.append(time.perf_counter() - t)  # but a repeat could still hit a cache)
    return statistics.median(out)
first = timed(lambda k: (idx.page(filter_query()), idx.tiles(filter_query())))
page = idx.page(filter_query())
filt = timed(lambda k: idx.page(filter_query(f"esp-01{k}")))
tiles_f = timed(lambda k: idx.tiles(filter_query(f"esp-02{k}")))
change = timed(lambda k: (idx.page(filter_query(f"esp-03{k}")), idx.tiles(filter_query(f"esp-03{k}"))))
rng = timed(lambda k: idx.page(filter_query(f"shadow.reported.temperature:[{30 - k} TO *] AND attributes.model:esp8266")))
rng_t = timed(lambda k: idx.tiles(filter_query(f"shadow.reported.temperature:[{30 - k} TO *] AND attributes.model:esp8266")))
nxt = timed(lambda k: idx.page(page.query, page.next_token, 2))
print(json.dumps({"first": first, "filter": filt, "filter_tiles": tiles_f, "change": change, "range": rng,
                  "range_tiles": rng_t, "next": nxt,
                  # VmRSS, not ru_maxrss: Linux keeps the forking parent's high-water mark across exec
                  "rss_mb": int([l for l in open("/proc/self/status") if l.startswith("VmRSS:")][0].split()[1]) / 1024,
                  "throttled": idx.throttled}))
"""


def run(n: int, repeat: int) -> dict:
    import boto3

    base = Path(tempfile.mkdtemp(prefix=f"fleet-index-{n}-"))
    state = base / "state"
    proc, info = start_sandbox(state)  # makes the state files
    stop_sandbox(proc)
    t = time.perf_counter()
    bulk_fill(state, n)
    fill_s = time.perf_counter() - t
    proc, info = start_sandbox(state, timeout=300)
    try:
        from botocore.config import Config

        iot = boto3.client("iot", **info.boto3_kwargs(),
                           config=Config(read_timeout=900, retries={"total_max_attempts": 1}))
        from fleetdesk.cloud import account_setup

        t = time.perf_counter()
        iot.update_indexing_configuration(thingIndexingConfiguration=account_setup.INDEXING)
        build_s = time.perf_counter() - t
        count = iot.get_statistics(queryString="*")["statistics"]["count"]
        out = subprocess.run([sys.executable, "-c", CLIENT, json.dumps(info.boto3_kwargs()), str(repeat)],
                             capture_output=True, text=True, cwd=ROOT, check=True)
        res = json.loads(out.stdout.strip().splitlines()[-1])
        res.update(things=count, fill_s=fill_s, build_s=build_s,
                   sandbox_rss_mb=_rss_of(proc.pid))
        return res
    finally:
        stop_sandbox(proc)
        shutil.rmtree(base, ignore_errors=True)  # 100,000 things are ~300 MB of state


def _rss_of(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--things", default="1000,100000", help="comma-separated fleet sizes (default 1000,100000)")
    ap.add_argument("--repeat", type=int, default=5, help="timings are the median of this many runs")
    args = ap.parse_args()
    sizes = [int(x) for x in args.things.split(",")]
    results = [run(n, args.repeat) for n in sizes]
    rows = [("things indexed", "things", "{:.0f}"), ("bulk fill (s)", "fill_s", "{:.1f}"),
            ("index build (s)", "build_s", "{:.1f}"),
            ("first page + tiles (ms, goal < 1000)", "first", "ms"),
            ("filter change: page + tiles (ms, goal < 300)", "change", "ms"),
            ("  of which page (ms)", "filter", "ms"), ("  of which tiles (ms)", "filter_tiles", "ms"),
            ("range query page (ms)", "range", "ms"), ("range query tiles (ms)", "range_tiles", "ms"),
            ("next page (ms)", "next", "ms"),
            ("client RSS (MB)", "rss_mb", "{:.1f}"), ("sandbox RSS (MB)", "sandbox_rss_mb", "{:.0f}"),
            ("throttled calls (retried)", "throttled", "{:.0f}")]
    print(f"{'':42}" + "".join(f"{n:>14,}" for n in sizes))
    for title, key, fmt in rows:
        cells = [(f"{r[key] * 1000:.0f}" if fmt == "ms" else fmt.format(r[key])) for r in results]
        print(f"{title:42}" + "".join(f"{c:>14}" for c in cells))
    if len(results) > 1:
        print(f"client RSS difference: {results[-1]['rss_mb'] - results[0]['rss_mb']:+.1f} MB (goal within 50 MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
