"""Hot-plug latency: how long after a (virtual) board appears or vanishes the PortWatcher reports it.

Goal: < 1 s at the station's polling interval (0.25 s). Figures: median and worst of N plug and N
unplug events, side by side. (tests/boards/test_slots.py checks that both are reported at all.)

Usage: .venv/bin/python bench/hotplug.py [--runs N] [--interval S]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fleetdesk.boards.ports import PortWatcher  # noqa: E402
from fleetdesk.virtual.board import VirtualBoard  # noqa: E402
from fleetdesk.virtual.spec import BoardSpec  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--interval", type=float, default=0.25)
    args = ap.parse_args()
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    seen: dict[tuple[str, str], float] = {}
    cond = threading.Condition()

    def on_change(added, removed):
        now = time.monotonic()
        with cond:
            for p in added:
                seen.setdefault(("plug", p.device), now)
            for p in removed:
                seen.setdefault(("unplug", p.device), now)
            cond.notify_all()

    def wait_for(key, timeout=10.0) -> float:
        with cond:
            if not cond.wait_for(lambda: key in seen, timeout):
                raise SystemExit(f"{key[0]} of {key[1]} never reported")
            return seen[key]

    plug, unplug = [], []
    with tempfile.TemporaryDirectory() as tmp:
        watcher = PortWatcher(on_change, interval=args.interval).start()
        try:
            for i in range(args.runs):
                board = VirtualBoard(BoardSpec(name=f"h{i}"), Path(tmp), register=True)
                t0 = time.monotonic()
                asyncio.run_coroutine_threadsafe(board.start(), loop).result(30)
                plug.append(wait_for(("plug", board.url)) - t0)
                t0 = time.monotonic()
                asyncio.run_coroutine_threadsafe(board.unplug(), loop).result(30)
                unplug.append(wait_for(("unplug", board.url)) - t0)
                asyncio.run_coroutine_threadsafe(board.close(), loop).result(30)
        finally:
            watcher.stop()
    print(f"hot-plug at interval {args.interval:.2f} s, {args.runs} runs (goal < 1 s)")
    print(f"{'event':<8} {'median s':>9} {'worst s':>8}")
    for name, xs in (("plug", plug), ("unplug", unplug)):
        print(f"{name:<8} {statistics.median(xs):>9.3f} {max(xs):>8.3f}")
    loop.call_soon_threadsafe(loop.stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
