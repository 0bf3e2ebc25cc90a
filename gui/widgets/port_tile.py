"""One station slot: label, chip/MAC, progress + stage, big PASS/FAIL (text and colour),
per-slot counters, START, and details on demand (esptool lines and console)."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QDialog,
    QFrame,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
)

_RESULT_STYLE = {
    "PASS": ("PASS ✔", "background:#1e7d32;color:white;"),
    "FAIL": ("FAIL ✘", "background:#b71c1c;color:white;"),
    "running": ("", "background:#1565c0;color:white;"),
    "HOLD": ("IDENTITY MISSING", "background:#ef6c00;color:white;"),
    "STOPPED": ("STOPPED ■", "background:#546e7a;color:white;"),
    "idle": ("READY", "background:#eceff1;color:#37474f;"),
}
_STAGE_TEXT = {
    "detect": "Connecting", "identity": "Creating identity", "write": "Writing", "verify": "Verifying",
    "boot": "Booting", "online": "Waiting for cloud", "ready": "Ready", "unplugged": "Unplugged", "done": "",
}


class _Details(QPlainTextEdit):
    """The esptool and console lines of the last run: readable, selectable, scrolls."""

    def __init__(self) -> None:
        super().__init__()
        self.setReadOnly(True)
        self.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.setStyleSheet("font-family:monospace;font-size:11px;")
        self.setMinimumHeight(150)

    def setText(self, text: str) -> None:  # noqa: N802 - the QLabel name it replaces
        if text != self.toPlainText():
            self.setPlainText(text)
            self.verticalScrollBar().setValue(self.verticalScrollBar().maximum())  # the latest lines

    def text(self) -> str:
        return self.toPlainText()


class PortTile(QFrame):
    """A tile bound to a slot; `update_from(tile_state)` repaints it.

    Signals:
        start_clicked(str): the slot whose START was pressed.
        stop_clicked(str): the slot whose STOP was pressed.
        rename_requested(str): the slot whose label was clicked.
    """

    start_clicked = Signal(str)
    stop_clicked = Signal(str)
    rename_requested = Signal(str)
    export_requested = Signal(str)
    restore_requested = Signal(str)
    new_identity_requested = Signal(str)
    allow_usb_requested = Signal(str)

    def __init__(self, slot: str, parent=None) -> None:
        super().__init__(parent)
        self.slot = slot
        self.setObjectName("PortTile")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setMinimumWidth(230)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(8, 6, 8, 6)
        lay.setSpacing(3)
        top = QHBoxLayout()
        self.title = QToolButton()
        self.title.setAutoRaise(True)
        self.title.setToolTip("Click to name this slot")
        self.title.clicked.connect(lambda: self.rename_requested.emit(self.slot))
        top.addWidget(self.title, 1)
        self.rename_btn = QToolButton()
        self.rename_btn.setText("✎")
        self.rename_btn.setAccessibleName("Rename slot")
        self.rename_btn.setToolTip("Name this slot (e.g. its jig position): tiles are ordered by name")
        self.rename_btn.setAutoRaise(True)
        self.rename_btn.clicked.connect(lambda: self.rename_requested.emit(self.slot))
        top.addWidget(self.rename_btn)
        self.counters = QLabel()
        top.addWidget(self.counters)
        lay.addLayout(top)
        self.port = QLabel()
        self.port.setStyleSheet("color:#607d8b;font-size:10px;")
        lay.addWidget(self.port)
        self.chip = QLabel("—")
        lay.addWidget(self.chip)
        self.result = QLabel()
        self.result.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.result.setMinimumHeight(36)
        font = self.result.font()
        font.setPointSize(font.pointSize() + 6)
        font.setBold(True)
        self.result.setFont(font)
        lay.addWidget(self.result)
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.progress.setTextVisible(True)
        lay.addWidget(self.progress)
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.message.setMinimumHeight(28)
        self.message.setStyleSheet("font-size:11px;")
        lay.addWidget(self.message)
        row = QHBoxLayout()
        self.start_btn = QPushButton("START")
        self.start_btn.clicked.connect(lambda: self.start_clicked.emit(self.slot))
        self.stop_btn = QPushButton("STOP")
        self.stop_btn.clicked.connect(lambda: self.stop_clicked.emit(self.slot))
        self.details_btn = QToolButton()
        self.details_btn.setText("Details")
        self.details_btn.setCheckable(True)
        row.addWidget(self.start_btn)
        row.addWidget(self.stop_btn)
        row.addWidget(self.details_btn)
        lay.addLayout(row)
        decide = QHBoxLayout()  # shown when the identity on file is missing on the board
        self.restore_btn = QPushButton("Restore identity")
        self.restore_btn.setToolTip("Write the identity on file (same thing, same certificate) back to this board")
        self.restore_btn.clicked.connect(lambda: self.restore_requested.emit(self.slot))
        self.new_btn = QPushButton("New identity")
        self.new_btn.setToolTip("Give this board a new certificate; the old one is retired (INACTIVE) once the board "
                                "is online, so it cannot be restored afterwards")
        self.new_btn.clicked.connect(lambda: self.new_identity_requested.emit(self.slot))
        for btn in (self.restore_btn, self.new_btn):
            btn.setVisible(False)
            decide.addWidget(btn)
        lay.addLayout(decide)
        self.allow_btn = QPushButton("Allow this USB id…")
        self.allow_btn.setToolTip("Only for an ESP board behind an unusual USB bridge: the station will send it "
                                  "bootloader sync bytes")
        self.allow_btn.clicked.connect(lambda: self.allow_usb_requested.emit(self.slot))
        self.allow_btn.setVisible(False)
        lay.addWidget(self.allow_btn)
        # Details open in a window of their own: the tile (and the grid of 16) never reflows
        self.details_window = QDialog(self)
        self.details_window.setWindowTitle(f"Details — {slot}")
        self.details_window.resize(640, 360)
        dv = QVBoxLayout(self.details_window)
        self.details = _Details()
        dv.addWidget(self.details, 1)
        self.export_btn = QPushButton("Export zip…")
        self.export_btn.setToolTip("Console log, esptool trace, journal and bundle SHA-256 (never keys)")
        self.export_btn.clicked.connect(lambda: self.export_requested.emit(self.slot))
        dv.addWidget(self.export_btn)
        self.details_btn.toggled.connect(self.details_window.setVisible)
        self.details_window.finished.connect(lambda _r: self.details_btn.setChecked(False))
        self._last: tuple | None = None

    @staticmethod
    def _key(t) -> tuple:
        return (t.label, t.port, t.present, t.chip, t.mac, t.stage, t.percent, t.state, t.message, t.passed, t.failed,
                len(t.details), t.probe_allowed, getattr(t, "waiting_s", None))

    def changed(self, t) -> bool:
        """Whether ``t`` differs from what the tile shows (a tuple compare: cheap at 10 Hz)."""
        return self._key(t) != self._last

    def update_from(self, t, locked_buttons: bool = False) -> None:
        """Repaint from a ``fleetdesk.boards.controller.TileState`` (skips when unchanged)."""
        key = self._key(t)
        if key == self._last:
            return
        self._last = key
        self.title.setText(t.label or t.port.replace("socket://", ""))
        self.port.setText(t.port if t.present else f"{t.port} (unplugged)")
        self.chip.setText(f"{t.chip or '?'}  {t.mac or ''}" if (t.chip or t.mac) else "chip not read yet")
        self.counters.setText(f"✔ {t.passed}  ✘ {t.failed}")
        text, style = _RESULT_STYLE.get(t.state, _RESULT_STYLE["idle"])
        if t.state == "running":
            text = _STAGE_TEXT.get(t.stage, t.stage) + "…"
        elif t.state == "idle":
            text = _STAGE_TEXT.get(t.stage, "") or "READY"
            if not t.present:
                text = "UNPLUGGED"
            elif not t.probe_allowed:
                text = "NOT PROBED"
        self.result.setText(text)
        self.result.setStyleSheet(style + "border-radius:4px;")
        self.result.setAccessibleName(f"result {t.state}")
        self.progress.setValue(t.percent)
        waiting = getattr(t, "waiting_s", None)
        if t.running and waiting is not None:  # online: a countdown, not a progress bar stuck at 100 %
            text = f"{_STAGE_TEXT.get(t.stage, t.stage)}… {waiting} s left"
            self.result.setText(text)
            self.progress.setFormat(f"{_STAGE_TEXT.get(t.stage, t.stage)}: {waiting} s left")
        else:
            self.progress.setFormat(f"{_STAGE_TEXT.get(t.stage, t.stage)} %p%" if t.running else "%p%")
        self.message.setText(t.message)
        self.start_btn.setEnabled(t.present and t.probe_allowed and not t.running)
        self.allow_btn.setVisible(not t.probe_allowed and bool(t.usb_id))
        holding = t.state == "HOLD"
        for b in (self.restore_btn, self.new_btn):
            b.setVisible(holding)
            b.setEnabled(holding and t.present)
        self.stop_btn.setEnabled(t.running)
        self.details.setText("\n".join(t.details[-200:]))
        self.export_btn.setEnabled(t.last_result is not None and not t.running)
