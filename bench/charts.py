"""Chart bench: 100 devices x 24 h of DHT11 history, pan/zoom frames per second.

Side by side in ONE run: fleetdesk_gui.widgets.live_plot.LivePlot as shipped (peak downsampling +
clip-to-view, NaN gaps) versus the same widget with both turned off (plain pyqtgraph
defaults), on the Device page case (one device's 24 h at 1 Hz, switching between the 100
devices' histories). Each frame moves the view (a pan or zoom step across the 24 h) and
repaints the chart synchronously (offscreen), so a frame is what a user would see.
Goal: >= 30 fps for the shipped chart. Also printed (info): all 100 devices overlaid in
one chart.

Usage: .venv/bin/python bench/charts.py [--devices 100] [--period 1] [--frames 120]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np  # noqa: E402
from verdict import print_load_and_result  # noqa: E402

GOAL_FPS = 30.0


def make_history(devices: int, period_s: float, end: float):
    """Synthetic 24 h per device: slow daily wave + noise, one offline hour every 6th device."""
    rng = np.random.default_rng(7)
    ts = np.arange(end - 86_400, end, period_s)
    day = np.sin((ts - ts[0]) / 86_400 * 2 * np.pi)
    out = []
    for d in range(devices):
        temp = (21 + 3 * day + rng.normal(0, 0.3, len(ts)) + d * 0.02).astype(np.float32)
        hum = (50 - 10 * day + rng.normal(0, 1.0, len(ts))).astype(np.float32)
        keep = np.ones(len(ts), dtype=bool)
        if d % 6 == 0:  # an offline hour: must be drawn as a gap
            keep[int(len(ts) * 0.4) : int(len(ts) * 0.4 + 3600 / period_s)] = False
        out.append((ts[keep], temp[keep], hum[keep]))
    return out


def frame_steps(frames: int, end: float) -> list[tuple[float, float]]:
    """Zoom from 24 h to ~1 h and back while panning across the day."""
    steps = []
    for i in range(frames):
        k = i % 40
        span = 86_400 / (1.1 ** (k if k < 20 else 40 - k))
        centre = end - 43_200 + 30_000 * np.sin(i / 7)
        steps.append((centre - span / 2, centre + span / 2))
    return steps


def run_mode(app, history, downsample: bool, frames: int, budget_s: float, end: float,
             overlay: bool) -> tuple[float, int]:
    """Frames per second of pan/zoom.

    overlay=False: the Device page case: one chart showing one device's 24 h.
    overlay=True: every device's curve in one chart at once.
    """
    from fleetdesk_gui.widgets.live_plot import LivePlot

    plot = LivePlot(capacity=len(history[0][0]) + 10, gap_s=60, downsample=downsample)
    plot.resize(1280, 720)
    if overlay:
        for d, (ts, t, h) in enumerate(history):
            plot.load(f"dev{d:03d}", ts, t, h)
    else:
        plot.load("device", *history[0])
    plot.show()
    plot.timer.stop()  # frames are driven here
    plot.set_follow(False)
    plot.refresh()
    plot.set_x_range(end - 86_400, end)
    app.processEvents()
    done = 0
    t0 = time.perf_counter()
    for i, (lo, hi) in enumerate(frame_steps(frames, end)):
        plot.set_x_range(lo, hi)
        app.processEvents()  # one paint, as in the app's event loop
        done += 1
        if time.perf_counter() - t0 > budget_s:
            break
    elapsed = time.perf_counter() - t0
    if not overlay and downsample:  # switching the page to another device: load its 24 h and draw
        switches = []
        for d in range(1, min(11, len(history))):
            t1 = time.perf_counter()
            plot.load("device", *history[d])
            plot.refresh()
            app.processEvents()
            switches.append(time.perf_counter() - t1)
        run_mode.switch_ms = 1000 * sorted(switches)[len(switches) // 2] if switches else float("nan")
    plot.close()
    plot.deleteLater()
    app.processEvents()
    return done / elapsed, done


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=100)
    ap.add_argument("--period", type=float, default=1.0, help="seconds between samples")
    ap.add_argument("--frames", type=int, default=120)
    ap.add_argument("--budget", type=float, default=15.0, help="max seconds per mode")
    args = ap.parse_args()
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([])
    end = time.time()
    history = make_history(args.devices, args.period, end)
    per_device = len(history[0][0])
    fast, n_fast = run_mode(app, history, True, args.frames, args.budget, end, overlay=False)
    slow, n_slow = run_mode(app, history, False, args.frames, args.budget, end, overlay=False)
    ov_fast, n_ov = run_mode(app, history, True, min(args.frames, 20), args.budget, end, overlay=True)
    ok = fast >= GOAL_FPS
    print(f"bench: charts ({args.devices} devices x 24 h, one sample / {args.period:g} s = "
          f"{per_device:,} samples x 2 channels per device, 1280x720, offscreen)")
    print(f"  goal:    Device page pan/zoom >= {GOAL_FPS:.0f} fps")
    print(f"  shipped: {fast:.1f} fps ({n_fast} frames; peak downsampling + clip-to-view)")
    print(f"  switch:  {run_mode.switch_ms:.0f} ms median to show another device's 24 h")
    print(f"  plain:   {slow:.1f} fps ({n_slow} frames; same widget, no downsampling, no clipping)")
    print(f"  ratio:   shipped / plain = {fast / slow:.1f}x")
    print(f"  info:    all {args.devices} devices overlaid in one chart: {ov_fast:.1f} fps ({n_ov} frames)")
    return print_load_and_result(ok, 9, " during the run")


if __name__ == "__main__":
    sys.exit(main())
