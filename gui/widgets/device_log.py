"""The Device page's Log tab: one thing's device log through ``session.logs`` (the records the
session kept, then each new one), appended on a 200 ms timer."""

from __future__ import annotations

import time
from typing import Any

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QPlainTextEdit, QWidget

from fleetdesk_gui import bridge
from fleetdesk_gui.widgets.error_text import error_text

LOG_LINES = 2000


def format_record(rec: Any) -> str:
    """One line of the view from a fleetdesk.cloud.logs.LogRecord."""
    level = f"[{rec.level}] " if rec.level else ""
    return f"{time.strftime('%H:%M:%S', time.localtime(rec.ts))}  {level}{rec.msg}"


async def _maybe_await(value: Any) -> Any:
    if hasattr(value, "__await__"):
        return await value
    return value


class DeviceLog(QPlainTextEdit):
    """Read-only log view; :meth:`follow` switches it to another thing (or none)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("deviceLog")
        self.setReadOnly(True)
        self.setMaximumBlockCount(LOG_LINES)
        self._pending: list[str] = []
        self._listener = None  # session.logs listener of the followed thing
        self._unsub = None  # its per-thing subscription (with a fleet index)
        self.thing: str | None = None
        self._timer = QTimer(self)
        self._timer.setInterval(200)
        self._timer.timeout.connect(self._flush)
        self._timer.start()

    def follow(self, session: Any, thing: str | None) -> None:
        """Show ``thing``'s log from ``session`` (None: stop following)."""
        self.thing = thing
        if self._listener is not None:
            self._listener()
            self._listener = None
        if self._unsub is not None:
            unsub, self._unsub = self._unsub, None
            bridge.submit(_maybe_await(unsub()))
        if session is None or not thing:
            return
        self._pending.extend(format_record(r) for r in session.logs.recent(thing))
        self._listener = session.logs.add_listener(
            lambda rec: bridge.post(self._pending.append, format_record(rec)) if rec.thing == thing else None)

        def done(unsub: Any, error: BaseException | None) -> None:
            if error is not None:
                self._pending.append(f"(log stream unavailable: {error_text(error, ' → ')})")
            elif thing == self.thing:
                self._unsub = unsub
            else:
                bridge.submit(_maybe_await(unsub()))

        bridge.submit(session.logs.watch(thing), done)

    def _flush(self) -> None:
        if self._pending:
            lines, self._pending = self._pending, []
            self.appendPlainText("\n".join(lines))

    def closeEvent(self, event: Any) -> None:  # noqa: N802 - Qt name
        self._timer.stop()
        if self._listener is not None:
            self._listener()
            self._listener = None
        super().closeEvent(event)
