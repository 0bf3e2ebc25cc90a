"""Serial console: the text a board prints on its UART (USB port or a virtual board's socket://).

fleetdesk.boards.console.stream_console reads it (DTR/RTS held low: opening does not reset the
board; blocking reads in worker threads); chunks arrive on the Qt thread with bridge.post and
are appended on a 100 ms timer. No pyserial here.
"""

from __future__ import annotations

import re

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QPlainTextEdit, QPushButton, QVBoxLayout, QWidget

from fleetdesk_gui import bridge

BAUD = 115200
NO_PORTS = "No serial port: plug in a board (or start virtual boards), then Rescan, or type a port."
MAX_LINES = 5000


def _mac_digits(text: str | None) -> str:
    return re.sub(r"[^0-9a-f]", "", (text or "").lower())


class SerialConsole(QWidget):
    """Pick a port, open it, watch the output.

    Args:
        parent: Qt parent.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("SerialConsole")
        self._serial: str | None = None  # the console URL while one is open
        self._stop = False
        self._chunks: list[str] = []
        layout = QVBoxLayout(self)
        row = QHBoxLayout()
        self.port_combo = QComboBox()
        self.port_combo.setObjectName("consolePort")
        self.port_combo.setEditable(True)
        self.port_combo.setMinimumWidth(160)
        self.refresh_button = QPushButton("Rescan")
        self.open_button = QPushButton("Open")
        self.open_button.setCheckable(True)
        self.status = QLabel("closed")
        self.status.setObjectName("consoleStatus")
        self.status.setWordWrap(True)  # on its own line: a long message never widens the window
        row.addWidget(self.port_combo, 1)
        row.addWidget(self.refresh_button)
        row.addWidget(self.open_button)
        layout.addLayout(row)
        layout.addWidget(self.status)
        self.view = QPlainTextEdit()
        self.view.setObjectName("consoleText")
        self.view.setReadOnly(True)
        self.view.setMaximumBlockCount(MAX_LINES)
        layout.addWidget(self.view, 1)
        self._flush_timer = QTimer(self)
        self._flush_timer.setInterval(100)
        self._flush_timer.timeout.connect(self._flush)
        self.refresh_button.clicked.connect(self.rescan)
        self.open_button.toggled.connect(lambda on: self.open() if on else self.close_port())

    # -- ports --------------------------------------------------------------------------
    def rescan(self, prefer_thing: str | None = None) -> None:
        """List serial ports (USB and registered virtual boards) in a worker thread."""
        from fleetdesk.boards.ports import list_ports

        def done(ports, error) -> None:
            if error is not None:
                self.status.setText(f"cannot list ports: {error}")
                return
            current = self.port_combo.currentText()
            self.port_combo.clear()
            if not ports and self._serial is None:
                self.status.setText(NO_PORTS)
            pick = None
            for p in ports:
                label = p.device + (f"  ({p.chip} {p.mac})" if p.mac else "")
                self.port_combo.addItem(label, p.device)
                if prefer_thing and p.mac and _mac_digits(p.mac) in _mac_digits(prefer_thing):
                    pick = self.port_combo.count() - 1
            if pick is not None:
                self.port_combo.setCurrentIndex(pick)
            elif current:
                self.port_combo.setEditText(current)

        bridge.run_blocking(list_ports, on_done=done)

    def port(self) -> str:
        """The selected (or typed) port URL."""
        data = self.port_combo.currentData()
        text = self.port_combo.currentText().strip()
        return data if data and text.startswith(data) else text

    # -- reading ------------------------------------------------------------------------
    def open(self, url: str | None = None) -> None:
        """Open ``url`` (default: the selected port) and stream its output."""
        url = url or self.port()
        if self._serial is not None:
            return
        if not url:
            self.status.setText(NO_PORTS)
            self._set_button(False)
            return
        self._stop = False
        self._set_button(True)
        self.status.setText(f"opening {url}…")
        self._flush_timer.start()
        bridge.submit(self._read_loop(url), self._ended)

    async def _read_loop(self, url: str) -> None:
        from fleetdesk.boards.console import stream_console

        self._serial = url
        bridge.post(self.status.setText, f"open: {url}")
        try:
            await stream_console(url, lambda text: bridge.post(self._add, text), lambda: self._stop, BAUD)
        finally:
            self._serial = None

    def _add(self, text: str) -> None:
        self._chunks.append(text)

    def _ended(self, _result, error) -> None:
        self._flush()
        self._flush_timer.stop()
        if error is not None:
            text = getattr(error, "message", None) or getattr(error, "strerror", None) or str(error)
            advice = getattr(error, "advice", None) or "is the board plugged in, and the port free of other programs?"
            self.status.setText(f"closed: {text} ({advice})")
        else:
            self.status.setText("closed")
        self._set_button(False)

    def _set_button(self, is_open: bool) -> None:
        """The Open button shows what a click does next (Open / Close)."""
        self.open_button.blockSignals(True)
        self.open_button.setChecked(is_open)
        self.open_button.setText("Close" if is_open else "Open")
        self.open_button.blockSignals(False)

    def close_port(self) -> None:
        """Stop reading (the port is closed by the reader within 0.2 s)."""
        self._stop = True

    def _flush(self) -> None:
        if self._chunks:
            text, self._chunks = "".join(self._chunks), []
            self.view.moveCursor(self.view.textCursor().MoveOperation.End)
            self.view.insertPlainText(text)
            self.view.ensureCursorVisible()

    def text(self) -> str:
        self._flush()
        return self.view.toPlainText()

    def closeEvent(self, event) -> None:  # noqa: N802
        self._stop = True
        self._flush_timer.stop()
        super().closeEvent(event)
