"""A widget that refreshes itself on a timer only while it is shown (a hidden page or chart
costs nothing): shown -> refresh now and start the timer; hidden or closed -> stop it."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QEvent, QObject, QTimer
from PySide6.QtWidgets import QWidget


class RefreshWhileVisible(QObject):
    """Drive ``refresh`` every ``interval_ms`` while ``widget`` is visible.

    Args:
        widget: the page or chart (an event filter is installed on it; this object is its child).
        refresh: called at show and on every tick.
        interval_ms: the tick.
        when: the refresh runs only while this is true (e.g. "a session is connected").

    Attributes:
        timer: the QTimer (a parent of it may start/stop it when ``when`` changes).
    """

    def __init__(self, widget: QWidget, refresh: Callable[[], object], interval_ms: int,
                 when: Callable[[], bool] = lambda: True) -> None:
        super().__init__(widget)
        self._refresh, self._when = refresh, when
        self.timer = QTimer(widget)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(refresh)
        widget.installEventFilter(self)

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt's name
        kind = event.type()
        if kind == QEvent.Type.Show and self._when():
            self.timer.start()
            self._refresh()
        elif kind in (QEvent.Type.Hide, QEvent.Type.Close):
            self.timer.stop()
        return False
