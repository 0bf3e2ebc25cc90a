"""Live DHT11 charts: numpy ring buffers, timer-driven redraw, peak downsampling, clip-to-view.

Pattern from pyqtgraph's ``scrollingPlots.py``/``PlotSpeedTest.py``: data producers only
``append`` into preallocated ring buffers; a 50 ms QTimer calls ``setData`` once per curve,
and only while the widget is visible. Gaps longer than ``gap_s`` (a device offline) are
drawn as gaps: a NaN is inserted between the two samples, never a joined line.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QDateTime, Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDateTimeEdit,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from fleetdesk_gui.widgets.visible_refresh import RefreshWhileVisible

CHANNELS = ("temperature", "humidity")
UNITS = {"temperature": "°C", "humidity": "%"}
RANGES = {"5 min": 300.0, "1 h": 3600.0, "24 h": 86400.0}
REFRESH_MS = 50
# Peak downsampling target: one (min, max) pair per 2 px. pyqtgraph's default (5 samples
# per pixel) draws 10x more segments than a screen can show; measured in bench/charts.py.
DOWNSAMPLE_FACTOR = 0.5
PALETTE = ("#d64545", "#2680c2", "#3ebd93", "#f0b429", "#8e44ad", "#e67e22", "#16a085", "#7b8794")


class RingBuffer:
    """Fixed-capacity time series: float64 timestamps + float32 value columns.

    Args:
        capacity: samples kept; the oldest are overwritten.
        columns: number of value columns (temperature, humidity = 2).
    """

    def __init__(self, capacity: int, columns: int = 2) -> None:
        self.capacity = int(capacity)
        self.ts = np.full(self.capacity, np.nan, dtype=np.float64)
        self.values = np.full((self.capacity, columns), np.nan, dtype=np.float32)
        self.head = 0  # next write index
        self.size = 0
        self.version = 0  # bumps on every write (redraw only when changed)

    def append(self, ts: float, *values: float | None) -> None:
        """Add one sample (None = missing value)."""
        i = self.head
        self.ts[i] = ts
        for c, v in enumerate(values):
            self.values[i, c] = np.nan if v is None else v
        self.head = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)
        self.version += 1

    def extend(self, ts: np.ndarray, values: np.ndarray) -> None:
        """Add many samples at once (``values`` shape (n, columns)), oldest first."""
        ts = np.asarray(ts, dtype=np.float64)
        if not len(ts):
            return
        values = np.asarray(values, dtype=np.float32).reshape(len(ts), -1)
        if len(ts) >= self.capacity:
            ts, values = ts[-self.capacity :], values[-self.capacity :]
            self.ts[:] = ts
            self.values[:] = values
            self.head, self.size = 0, self.capacity
        else:
            n = len(ts)
            first = min(n, self.capacity - self.head)
            self.ts[self.head : self.head + first] = ts[:first]
            self.values[self.head : self.head + first] = values[:first]
            rest = n - first
            if rest:
                self.ts[:rest] = ts[first:]
                self.values[:rest] = values[first:]
            self.head = (self.head + n) % self.capacity
            self.size = min(self.size + n, self.capacity)
        self.version += 1

    def clear(self) -> None:
        self.head = self.size = 0
        self.version += 1

    def ordered(self) -> tuple[np.ndarray, np.ndarray]:
        """(ts, values) oldest first (copies when wrapped)."""
        if self.size < self.capacity:
            return self.ts[: self.size], self.values[: self.size]
        h = self.head
        return np.concatenate((self.ts[h:], self.ts[:h])), np.concatenate((self.values[h:], self.values[:h]))


def with_gaps(ts: np.ndarray, ys: np.ndarray, gap_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Insert a NaN between samples further apart than ``gap_s`` so the curve breaks there."""
    if len(ts) < 2 or not gap_s:
        return ts, ys
    breaks = np.flatnonzero(np.diff(ts) > gap_s) + 1
    if not len(breaks):
        return ts, ys
    return np.insert(ts, breaks, ts[breaks - 1] + gap_s / 2), np.insert(ys, breaks, np.nan)


class _Series:
    def __init__(self, key: str, capacity: int, curves: list) -> None:
        self.key = key
        self.buffer = RingBuffer(capacity, len(CHANNELS))
        self.curves = curves
        self.drawn = -1


class LivePlot(QWidget):
    """Temperature and humidity charts (linked time axes) for one or more series.

    Args:
        capacity: samples kept per series (default 24 h at 1 Hz).
        gap_s: a silence longer than this is shown as a gap.
        downsample: peak downsampling + clip-to-view (turn off only to measure the difference).

    Signals:
        range_changed(float, float): the visible time range (epoch seconds) changed.
    """

    range_changed = Signal(float, float)

    def __init__(self, parent: QWidget | None = None, capacity: int = 86_400, gap_s: float = 30.0,
                 downsample: bool = True) -> None:
        super().__init__(parent)
        self.setObjectName("LivePlot")
        self.capacity = capacity
        self.gap_s = gap_s
        self.downsample = downsample
        self.follow = True
        self.span_s = RANGES["5 min"]
        self.frames = 0  # redraws done (for fps readouts and tests)
        self._series: dict[str, _Series] = {}

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        bar = QHBoxLayout()
        self.range_combo = QComboBox()
        self.range_combo.setObjectName("rangeCombo")
        for label in (*RANGES, "Custom"):
            self.range_combo.addItem(label)
        self.since_edit = QDateTimeEdit()
        self.until_edit = QDateTimeEdit()
        for edit in (self.since_edit, self.until_edit):
            edit.setDisplayFormat("yyyy-MM-dd HH:mm:ss")
            edit.setCalendarPopup(True)
            edit.setVisible(False)
        self.live_button = QPushButton("Live")
        self.live_button.setCheckable(True)
        self.live_button.setChecked(True)
        self.live_button.setToolTip("Follow the newest samples; panning or zooming the chart turns this off")
        self.readout = QLabel("")
        self.readout.setObjectName("crosshairReadout")
        # Takes the free width of the bar, never asks for more: hover text changes neither
        # relayout the bar nor set a minimum width for the window.
        self.readout.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.readout.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        bar.addWidget(QLabel("Range"))
        bar.addWidget(self.range_combo)
        bar.addWidget(self.since_edit)
        bar.addWidget(self.until_edit)
        bar.addWidget(self.live_button)
        bar.addWidget(self.readout, 1)
        layout.addLayout(bar)

        self.graphics = pg.GraphicsLayoutWidget()
        self.graphics.setBackground("w")
        layout.addWidget(self.graphics, 1)
        self.plots: dict[str, pg.PlotItem] = {}
        self.vlines: list[pg.InfiniteLine] = []
        for row, ch in enumerate(CHANNELS):
            plot = self.graphics.addPlot(row=row, col=0, axisItems={"bottom": pg.DateAxisItem()})
            plot.setLabel("left", f"{ch.capitalize()} ({UNITS[ch]})")  # no units=: no SI relabel per frame
            # No grid: grid lines are drawn by the axes with alpha and cost ~40% of each frame
            # (bench/charts.py); the crosshair readout gives exact values instead.
            plot.setMouseEnabled(x=True, y=False)
            plot.enableAutoRange(axis="y", enable=True)
            plot.setAutoVisible(y=True)
            if self.downsample:
                plot.setDownsampling(auto=True, mode="peak")
                plot.setClipToView(True)
            # Fixed axis width: tick labels of changing width would relayout (and re-render the
            # axis label) on every pan/zoom frame.
            plot.getAxis("left").setWidth(64)
            for side in ("left", "bottom"):  # pyqtgraph's default light grey is hard to read on white
                plot.getAxis(side).setPen("#9aa5b1")  # (also recolours the label: text pen after it)
                plot.getAxis(side).setTextPen("#3e4c59")
            if row:
                plot.setXLink(self.plots[CHANNELS[0]])
            else:  # the time axis is drawn once, under the last chart (x is linked)
                plot.hideAxis("bottom")
            vline = pg.InfiniteLine(angle=90, movable=False, pen=pg.mkPen("#7b8794", style=pg.QtCore.Qt.DashLine))
            vline.setVisible(False)
            plot.addItem(vline, ignoreBounds=True)
            self.vlines.append(vline)
            self.plots[ch] = plot
        # pyqtgraph makes each plot's context menus without a parent: delete them with the plot
        # (else every closed chart leaves parentless QMenus behind, tests/gui/conftest.py's leak check)
        menus = [m for p in self.plots.values() for m in (p.ctrlMenu, p.getViewBox().menu) if m is not None]
        self.destroyed.connect(lambda *_: [m.deleteLater() for m in menus])
        top = self.plots[CHANNELS[0]]
        top.sigXRangeChanged.connect(self._x_changed)
        top.getViewBox().sigRangeChangedManually.connect(self._manual_range)
        self.plots[CHANNELS[1]].getViewBox().sigRangeChangedManually.connect(self._manual_range)
        self._mouse_proxy = pg.SignalProxy(self.graphics.scene().sigMouseMoved, rateLimit=30, slot=self._mouse_moved)

        self.timer = RefreshWhileVisible(self, self.refresh, REFRESH_MS).timer
        self.range_combo.currentTextChanged.connect(self._range_picked)
        self.live_button.toggled.connect(self.set_follow)
        self.since_edit.dateTimeChanged.connect(self._custom_changed)
        self.until_edit.dateTimeChanged.connect(self._custom_changed)

    # -- data ---------------------------------------------------------------------------
    def series(self, key: str) -> _Series:
        """The series for ``key`` (a thing name), created with its curves on first use."""
        s = self._series.get(key)
        if s is None:
            color = PALETTE[len(self._series) % len(PALETTE)]
            curves = [self.plots[ch].plot(pen=pg.mkPen(color, width=1), name=key) for ch in CHANNELS]
            if self.downsample:
                for curve in curves:  # no public setter in pyqtgraph 0.13/0.14
                    curve.opts["autoDownsampleFactor"] = DOWNSAMPLE_FACTOR
            s = self._series[key] = _Series(key, self.capacity, curves)
        return s

    def append(self, key: str, ts: float, temperature: float | None, humidity: float | None) -> None:
        """Add one live sample (cheap: the next timer tick draws it)."""
        self.series(key).buffer.append(ts, temperature, humidity)

    def load(self, key: str, ts: np.ndarray, temperature: np.ndarray, humidity: np.ndarray) -> None:
        """Replace a series' data with history arrays (oldest first)."""
        s = self.series(key)
        s.buffer.clear()
        s.buffer.extend(ts, np.column_stack([temperature, humidity]))

    def keys(self) -> Iterable[str]:
        return self._series.keys()

    def data(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """(ts, values[n, 2]) of a series, oldest first."""
        return self._series[key].buffer.ordered()

    # -- drawing ------------------------------------------------------------------------
    def refresh(self) -> None:
        """Redraw changed series (the timer calls this; only while visible)."""
        changed = False
        for s in self._series.values():
            if s.drawn == s.buffer.version:
                continue
            ts, values = s.buffer.ordered()
            for c, curve in enumerate(s.curves):
                t, y = with_gaps(ts, values[:, c], self.gap_s)
                curve.setData(t, y, connect="finite")
            s.drawn = s.buffer.version
            changed = True
        if self.follow:
            self._follow_now()
        if changed:
            self.frames += 1

    def _follow_now(self) -> None:
        latest = max((s.buffer.ts[(s.buffer.head - 1) % s.buffer.capacity] for s in self._series.values()
                      if s.buffer.size), default=None)
        end = max(time.time(), latest or 0.0)
        lo, hi = self.visible_range()
        px = max(self.plots[CHANNELS[0]].getViewBox().width(), 100.0)
        step = self.span_s / px  # seconds per pixel
        if abs(hi - end) < step and abs((hi - lo) - self.span_s) < step:
            return  # less than a pixel: no scroll, no repaint
        self.set_x_range(end - self.span_s, end, manual=False)

    def set_x_range(self, start: float, end: float, manual: bool = True) -> None:
        """Show ``start..end`` (epoch seconds); a manual range stops following live data."""
        if manual:
            self.set_follow(False)
        self.plots[CHANNELS[0]].setXRange(start, end, padding=0)

    def visible_range(self) -> tuple[float, float]:
        """The shown time range (epoch seconds)."""
        lo, hi = self.plots[CHANNELS[0]].viewRange()[0]
        return float(lo), float(hi)

    def export_range(self) -> tuple[float, float]:
        """The range an export should cover: what is shown, up to now while following live data."""
        if self.follow:
            now = time.time()
            return now - self.span_s, now + 1.0
        return self.visible_range()

    def set_span(self, label: str) -> None:
        """Pick "5 min", "1 h", "24 h" (follows live data) or "Custom"."""
        self.range_combo.setCurrentText(label)

    def set_follow(self, on: bool) -> None:
        """Follow the newest data (True) or stay where the user panned (False)."""
        self.follow = on
        if self.live_button.isChecked() != on:
            self.live_button.blockSignals(True)
            self.live_button.setChecked(on)
            self.live_button.blockSignals(False)
        if on:
            self._follow_now()

    def _range_picked(self, label: str) -> None:
        custom = label == "Custom"
        self.since_edit.setVisible(custom)
        self.until_edit.setVisible(custom)
        if custom:
            lo, hi = self.visible_range()
            self.since_edit.setDateTime(QDateTime.fromSecsSinceEpoch(int(lo)))
            self.until_edit.setDateTime(QDateTime.fromSecsSinceEpoch(int(math.ceil(hi))))
            self.set_follow(False)
        else:
            self.span_s = RANGES[label]
            self.set_follow(True)

    def _custom_changed(self, *_args) -> None:
        if self.range_combo.currentText() != "Custom":
            return
        lo = self.since_edit.dateTime().toSecsSinceEpoch()
        hi = self.until_edit.dateTime().toSecsSinceEpoch()
        if hi > lo:
            self.set_x_range(float(lo), float(hi))

    def _manual_range(self, *_args) -> None:
        self.set_follow(False)

    def _x_changed(self, _vb, rng) -> None:
        self.range_changed.emit(float(rng[0]), float(rng[1]))

    # -- crosshair ----------------------------------------------------------------------
    def _mouse_moved(self, event) -> None:
        pos = event[0]
        for plot in self.plots.values():
            if plot.sceneBoundingRect().contains(pos):
                x = plot.getViewBox().mapSceneToView(pos).x()
                self.show_crosshair(x)
                return

    def show_crosshair(self, x: float) -> str:
        """Put the crosshair at time ``x`` and return the readout text (nearest sample)."""
        for v in self.vlines:
            v.setPos(x)
            v.setVisible(True)
        parts = [QDateTime.fromMSecsSinceEpoch(int(x * 1000)).toString("yyyy-MM-dd HH:mm:ss")]
        for key, s in self._series.items():
            ts, values = s.buffer.ordered()
            if not len(ts):
                continue
            i = int(np.clip(np.searchsorted(ts, x), 0, len(ts) - 1))
            if i and abs(ts[i - 1] - x) < abs(ts[i] - x):
                i -= 1
            if abs(ts[i] - x) > self.gap_s:
                parts.append(f"{key}: no data")
                continue
            t, h = values[i]
            tt = "—" if np.isnan(t) else f"{t:.1f} °C"
            hh = "—" if np.isnan(h) else f"{h:.0f} %"
            parts.append(f"{key}: {tt}, {hh}")
            if len(parts) > 4:
                break
        text = "  ".join(parts)
        self.readout.setText(text)
        return text

