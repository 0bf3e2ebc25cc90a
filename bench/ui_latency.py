"""UI latency under ingest: the app (offscreen) with the Fleet page and a Device page open
while 1,000 devices publish telemetry. Goal: frame latency p95 <= 50 ms, 0 messages lost.

Side by side in ONE run, same window: a probe QTimer (every 16 ms) measures the gap between
its ticks, first with the app idle (the floor), then while 1,000 devices send telemetry at a
fleet-like rate (default 2,000 msg/s: 2 Hz each), then as a burst as fast as the broker
takes it. A long gap is a frozen UI (what MQTT Explorer users complain about). The load is
publisher processes (bench/ingest.py's, paced, niced) on a private mosquitto (QoS1,
``dt/sim-NNNN/env``); the app's real pipeline stores each batch in SQLite before acking,
updates the fleet table on its 2 Hz tick and the Device page's chart on its 20 Hz timer.
Loss is checked by sequence number. The goal is judged on the paced phase.

Usage: .venv/bin/python bench/ui_latency.py [--devices 1000] [--msgs 20] [--rate 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from env_publisher import start_publishers  # noqa: E402
from verdict import print_load_and_result  # noqa: E402

GOAL_P95_MS = 50.0
PROBE_MS = 16



class Probe:
    """Records the gaps between ticks of a 16 ms QTimer."""

    def __init__(self) -> None:
        from PySide6.QtCore import QTimer

        self.gaps: list[float] = []
        self.last = 0.0
        self.timer = QTimer()
        self.timer.setInterval(PROBE_MS)
        self.timer.timeout.connect(self._tick)

    def _tick(self) -> None:
        now = time.perf_counter()
        if self.last:
            self.gaps.append((now - self.last) * 1000)
        self.last = now

    def start(self) -> None:
        self.gaps, self.last = [], 0.0
        self.timer.start()

    def stop(self) -> list[float]:
        self.timer.stop()
        return self.gaps


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


async def scenario(args, app, tmp: Path) -> dict:
    import ingest

    from fleetdesk.cloud.control import ControlPlane
    from fleetdesk.cloud.session import CloudSession
    from fleetdesk.config import Profile, Profiles
    from fleetdesk.store.telemetry import TelemetryStore
    from fleetdesk_gui.app import build_window
    from fleetdesk_gui.pages.device import DevicePage
    from PySide6.QtCore import QSettings

    broker = ingest.Mosquitto(tmp)
    broker.start()
    try:
        settings = QSettings(str(tmp / "ui.ini"), QSettings.IniFormat)
        ctx, win = build_window(Profiles(), settings)
        win.resize(1280, 800)
        win.show()
        fleet_page = win.show_page("Fleet")
        device = DevicePage(ctx)  # a second top-level window: both pages visible at once
        device.resize(1200, 700)
        device.show()
        store = TelemetryStore(tmp / "telemetry.sqlite3", retention_days=None)
        session = CloudSession(Profile(name="bench", kind="sandbox"),
                               settings=ingest.settings(broker.port, "bench-ui-app", clean=False),
                               control=ControlPlane(None), store=store)
        await session.start(load_registry=False)
        ctx.live.attach(session)
        device.open_target("sim-0007")
        shown = {"samples": 0}
        ctx.live.samples.connect(lambda batch: shown.__setitem__("samples", shown["samples"] + len(batch)))
        probe = Probe()
        probe.start()
        await asyncio.sleep(3.0)
        idle = probe.stop()

        phases = {}
        base = 0
        for name, rate in (("paced", args.rate), ("burst", 0)):
            total = args.devices * args.msgs
            # paced and at nice 10: the load generator must not take the app's CPU on a small test box
            pubs = await asyncio.to_thread(lambda rate=rate: start_publishers(broker.port, args.devices, args.msgs, args.publishers,
                                                                    rate=rate, nice=10, prefix="ui-publisher"))
            probe.start()
            t0 = time.perf_counter()
            pub = asyncio.ensure_future(asyncio.to_thread(ingest.go_and_wait, pubs))
            deadline = time.monotonic() + 300
            while session.telemetry.stats["stored"] < base + total and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            elapsed = time.perf_counter() - t0
            await asyncio.sleep(0.6)  # two fleet ticks: the table shows the last values
            phases[name] = {"gaps": probe.stop(), "elapsed": elapsed, "stored": session.telemetry.stats["stored"] - base}
            await pub
            base += total
        await session.telemetry.flushed()
        rep = store.seq_report()
        rows = fleet_page.model.rowCount()
        points = len(device.plot.data("sim-0007")[0]) if "sim-0007" in device.plot.keys() else 0
        result = {
            "idle": idle, "phases": phases, "stored": store.count(), "total": 2 * args.devices * args.msgs,
            "missing": sum(v["missing"] for v in rep.values()), "shown": shown["samples"], "rows": rows,
            "points": points, "ticks": ctx.live.ticks, "table_batches": fleet_page.model.batches,
        }
        ctx.live.detach()
        await session.stop()
        device.close()
        win.close()
        return result
    finally:
        broker.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--msgs", type=int, default=20)
    ap.add_argument("--publishers", type=int, default=2)
    ap.add_argument("--rate", type=int, default=2000, help="offered msg/s in the paced phase (1,000 devices at 2 Hz)")
    args = ap.parse_args()
    import qasync
    from PySide6.QtWidgets import QApplication

    from fleetdesk_gui import bridge

    app = QApplication.instance() or QApplication([])
    app.setQuitOnLastWindowClosed(False)
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    bridge.set_loop(loop)
    with tempfile.TemporaryDirectory(prefix="fd-ui-") as tmp:
        with loop:
            r = loop.run_until_complete(scenario(args, app, Path(tmp)))
    p95_idle = pct(r["idle"], 0.95)
    paced, burst = r["phases"]["paced"], r["phases"]["burst"]
    p95_paced, p95_burst = pct(paced["gaps"], 0.95), pct(burst["gaps"], 0.95)
    lost = r["total"] - r["stored"]
    ok = p95_paced <= GOAL_P95_MS and lost == 0 and r["missing"] == 0
    per = args.devices * args.msgs
    print(f"bench: UI latency under ingest ({args.devices} devices x {args.msgs} msgs = {per:,} QoS1 messages per "
          "phase; Fleet page + Device page open, offscreen)")
    print(f"  goal:     frame latency p95 <= {GOAL_P95_MS:.0f} ms at {args.rate:,} msg/s, 0 messages lost")
    print(f"  idle:     probe gap p50 {statistics.median(r['idle']):.1f} ms, p95 {p95_idle:.1f} ms "
          f"(floor: a {PROBE_MS} ms timer)")
    for name, ph, p95 in (("paced", paced, p95_paced), ("burst", burst, p95_burst)):
        rate = ph["stored"] / ph["elapsed"] if ph["elapsed"] else 0.0
        what = f"{args.rate:,} msg/s offered" if name == "paced" else "as fast as the broker takes them"
        print(f"  {name}:    {what}: {rate:,.0f} msg/s stored and shown; probe gap p50 "
              f"{statistics.median(ph['gaps']):.1f} ms, p95 {p95:.1f} ms, max {max(ph['gaps']):.0f} ms "
              f"({p95 / p95_idle:.1f}x idle)")
    print(f"  shown:    {r['shown']:,} samples delivered to the UI in batches, {r['rows']} table rows, "
          f"{r['table_batches']} table updates, {r['points']} chart points for sim-0007")
    print(f"  loss:     {lost} not stored, {r['missing']} missing by sequence number")
    return print_load_and_result(ok, 10)


if __name__ == "__main__":
    sys.exit(main())
