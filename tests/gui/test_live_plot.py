"""fleetdesk_gui.widgets.live_plot: ring buffers, gaps as gaps, timer only when visible, ranges, crosshair."""

from __future__ import annotations

import time

import numpy as np
import pytest

from fleetdesk_gui.widgets.live_plot import REFRESH_MS, LivePlot, RingBuffer, with_gaps

pytestmark = [pytest.mark.gui, pytest.mark.timeout(60)]


def test_ring_buffer_wraps_and_keeps_order():
    rb = RingBuffer(5)
    for i in range(8):
        rb.append(float(i), i * 10.0, None)
    ts, vals = rb.ordered()
    assert ts.tolist() == [3.0, 4.0, 5.0, 6.0, 7.0]
    assert vals[:, 0].tolist() == [30.0, 40.0, 50.0, 60.0, 70.0]
    assert np.isnan(vals[:, 1]).all()
    rb.extend(np.arange(100.0, 103.0), np.ones((3, 2)))
    assert rb.ordered()[0].tolist() == [6.0, 7.0, 100.0, 101.0, 102.0]
    rb.extend(np.array([]), np.zeros((0, 2)))
    rb.extend(np.arange(10.0), np.zeros((10, 2)))
    assert rb.ordered()[0].tolist() == [5.0, 6.0, 7.0, 8.0, 9.0]


def test_gaps_become_nan_breaks():
    ts = np.array([0.0, 1.0, 2.0, 100.0, 101.0])
    t, y = with_gaps(ts, np.ones(5, dtype=np.float32), gap_s=10)
    assert len(t) == 6 and np.isnan(y[3]) and np.isnan(y).sum() == 1
    assert np.all(np.diff(t) > 0)


@pytest.fixture
def plot(qtbot):
    w = LivePlot(capacity=1000, gap_s=10)
    qtbot.addWidget(w)
    w.resize(900, 500)
    return w


def test_live_points_are_drawn_on_the_timer_only_while_visible(plot, qtbot, shot):
    now = time.time()
    assert not plot.timer.isActive()
    plot.show()
    qtbot.waitExposed(plot)
    assert plot.timer.isActive()
    for i in range(60):
        plot.append("t1", now - 120 + i, 20 + (i % 7) * 0.5, 40 + i % 5)
    for i in range(30):  # after a 60 s silence (offline): must not be joined
        plot.append("t1", now - 30 + i, 22.0, 45.0)
    qtbot.waitUntil(lambda: plot.frames > 0, timeout=3000)
    curve = plot.series("t1").curves[0]
    x, y = curve.xData, curve.yData
    assert np.isnan(y).sum() == 1, "the offline gap is not a gap"
    assert np.nanmax(y) == pytest.approx(23.0)
    lo, hi = plot.visible_range()
    assert hi - lo == pytest.approx(300, rel=0.01) and hi >= now - 1
    shot(plot, "live-plot")
    plot.hide()
    assert not plot.timer.isActive()
    frames = plot.frames
    plot.append("t1", now + 1, 25.0, 50.0)
    qtbot.wait(4 * REFRESH_MS)  # a window of 4 refresh periods in which a hidden plot must not redraw (nothing to wait for)
    assert plot.frames == frames, "a hidden plot redrew"


def test_ranges_manual_pan_and_crosshair(plot, qtbot):
    now = time.time()
    ts = np.arange(now - 7200, now, 5.0)
    plot.load("t1", ts, np.full(len(ts), 21.5), np.full(len(ts), 55.0))
    plot.show()
    qtbot.waitExposed(plot)
    plot.set_span("1 h")
    lo, hi = plot.visible_range()
    assert hi - lo == pytest.approx(3600, rel=0.01)
    assert plot.follow
    plot.set_x_range(now - 5000, now - 4000)
    assert not plot.follow and not plot.live_button.isChecked()
    plot.refresh()
    assert plot.visible_range()[0] == pytest.approx(now - 5000, abs=1)
    text = plot.show_crosshair(now - 4500)
    assert "t1: 21.5 °C, 55 %" in text
    assert "no data" in plot.show_crosshair(now + 3600)
    plot.set_span("Custom")
    assert plot.since_edit.isVisible()
    plot.live_button.click()
    assert plot.follow
