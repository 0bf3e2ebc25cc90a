"""BLE Setup → Batch…: many boards from a CSV sheet, several at once, a row per board with its
state and reason, Resume for the failed ones, the results exported. Thin over
fleetdesk.ble.batch (the sheet format is described there)."""

from __future__ import annotations

from typing import Any

from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from fleetdesk.errors import FleetdeskError
from fleetdesk_gui import bridge

COLUMNS = ("Line", "Board", "Thing", "State", "Reason")
COLOURS = {"done": "#1b7f3b", "failed": "#b3261e"}


class BleBatchDialog(QDialog):
    """The batch window; ``rows`` are fleetdesk.ble.batch.BatchRow objects."""

    def __init__(self, ctx: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.rows: list = []
        self._index: dict[int, int] = {}
        self.running = False
        self.setWindowTitle("Batch BLE setup")
        self.resize(900, 480)
        v = QVBoxLayout(self)
        bar = QHBoxLayout()
        self.import_button = QPushButton("Import sheet…")
        self.import_button.setToolTip("CSV: address (or name pattern like FD-A0*), pop, wifi_ssid, wifi_password, thing")
        self.parallel = QSpinBox()
        self.parallel.setRange(1, 16)
        self.parallel.setValue(4)
        self.parallel.setPrefix("at once: ")
        self.start_button = QPushButton("Start")
        self.resume_button = QPushButton("Resume failed")
        self.export_button = QPushButton("Export results…")
        for w in (self.import_button, self.parallel, self.start_button, self.resume_button, self.export_button):
            bar.addWidget(w)
        bar.addStretch(1)
        v.addLayout(bar)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        header = self.table.horizontalHeader()
        for c in range(len(COLUMNS) - 1):
            header.setSectionResizeMode(c, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(len(COLUMNS) - 1, QHeaderView.ResizeMode.Stretch)
        v.addWidget(self.table, 1)
        self.message = QLabel("Import a sheet: one line per board.")
        self.message.setWordWrap(True)
        v.addWidget(self.message)
        self.import_button.clicked.connect(lambda: self.import_sheet())
        self.start_button.clicked.connect(self.start)
        self.resume_button.clicked.connect(self.start)
        self.export_button.clicked.connect(lambda: self.export())
        self._buttons()

    def _say(self, text: str, ok: bool = True) -> None:
        self.message.setText(text)
        self.message.setStyleSheet("" if ok else "color: #b3261e;")

    def _buttons(self) -> None:
        from fleetdesk.ble.batch import pending

        todo = pending(self.rows)
        failed = [r for r in todo if r.state == "failed"]
        self.import_button.setEnabled(not self.running)
        self.start_button.setEnabled(not self.running and bool(todo) and not failed)
        self.resume_button.setEnabled(not self.running and bool(failed))
        self.export_button.setEnabled(not self.running and bool(self.rows))

    def import_sheet(self, path: str | None = None) -> bool:
        """Load a sheet (a file dialog when ``path`` is None); its problems are named here."""
        from fleetdesk.ble.batch import load_batch

        if path is None:
            path, _ = QFileDialog.getOpenFileName(self, "Batch sheet", "", "CSV (*.csv);;All files (*)")
            if not path:
                return False
        try:
            rows = load_batch(path)
        except FleetdeskError as exc:
            self._say(exc.message + (f"\n→ {exc.advice}" if exc.advice else ""), ok=False)
            return False
        done = {(r.row, r.address): r for r in self.rows if r.state == "done"}
        self.rows = [done.get((r.row, r.address), r) for r in rows]  # a fixed sheet re-imported: done stays done
        self.table.setRowCount(len(self.rows))
        self._index = {id(r): i for i, r in enumerate(self.rows)}
        for r in self.rows:
            self._show(r)
        self._say(f"{len(self.rows)} board(s) in the sheet. Put them in Config mode close by, then Start.")
        self._buttons()
        return True

    def _show(self, r: Any) -> None:
        i = self._index.get(id(r))
        if i is None:
            return
        for c, text in enumerate((str(r.row), r.board or r.address, r.thing_name or r.thing, r.state, r.reason)):
            item = QTableWidgetItem(text)
            if c == 3 and r.state in COLOURS:
                item.setForeground(QColor(COLOURS[r.state]))
            if c == 4 and text:
                item.setToolTip(text)
            self.table.setItem(i, c, item)

    def start(self) -> None:
        """Provision every row not done yet (Start; Resume after fixing the sheet or the boards)."""
        from fleetdesk.ble.batch import pending, run_batch

        todo = pending(self.rows)
        if not todo or self.running:
            return
        self.running = True
        self._buttons()
        self._say(f"Setting up {len(todo)} board(s), {self.parallel.value()} at a time…")
        bridge.submit(run_batch(self.rows, self.ctx.profile, parallel=self.parallel.value(),
                                on_row=lambda r: bridge.post(self._show, r)), self._finished)

    def _finished(self, rows: Any, error: BaseException | None) -> None:
        self.running = False
        for r in self.rows:
            self._show(r)
        self._buttons()
        if error is not None:
            self._say(f"The batch stopped: {getattr(error, 'message', None) or error}", ok=False)
            return
        done = sum(r.state == "done" for r in self.rows)
        failed = len(self.rows) - done
        self._say(f"{done} of {len(self.rows)} board(s) set up" +
                  (f"; {failed} failed: fix them (see Reason), then Resume failed." if failed else "."), ok=not failed)

    def export(self, path: str | None = None) -> None:
        """Save each row's outcome as CSV (no PoP, no password)."""
        from fleetdesk.ble.batch import export_results

        if path is None:
            path, _ = QFileDialog.getSaveFileName(self, "Batch results", "ble-batch-results.csv", "CSV (*.csv)")
            if not path:
                return
        try:
            export_results(self.rows, path)
            self._say(f"Results written to {path}")
        except OSError as exc:
            self._say(f"cannot write {path}: {exc.strerror or exc}", ok=False)
