"""Line page: every station on the line's shared ledger (state, PASS/FAIL by cause for the
shift, boards/hour, open runs), the pool level, CSV export, and the ledger setting.

The figures come from `fleetdesk.boards.line.read_line_status` in a worker thread (a ledger on
the network must never freeze the window), refreshed every few seconds while shown.
"""

from __future__ import annotations

import threading

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from fleetdesk.boards.line import read_line_status, write_csv
from fleetdesk.errors import FleetdeskError
from fleetdesk.store.ledger import configured_ledger, redacted, save_ledger_setting
from fleetdesk_gui import bridge
from fleetdesk_gui.context import AppContext
from fleetdesk_gui.widgets.error_text import error_text

REFRESH_MS = 5000
COLUMNS = ("Station", "State", "PASS", "FAIL", "Boards/h", "Open runs", "FAIL causes")


class LinePage(QWidget):
    def __init__(self, ctx: AppContext | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.status: dict | None = None
        self._busy = False
        lay = QVBoxLayout(self)
        row = QHBoxLayout()
        row.addWidget(QLabel("Line ledger:"))
        self.ledger = QLineEdit(configured_ledger() or "")
        self.ledger.setPlaceholderText("postgresql://user@host/db — empty: this station's own SQLite")
        self.ledger.setObjectName("line-ledger")
        row.addWidget(self.ledger, 1)
        self.save = QPushButton("Use")
        self.save.clicked.connect(self.save_ledger)
        row.addWidget(self.save)
        lay.addLayout(row)
        self.summary = QLabel("")
        self.summary.setObjectName("line-summary")
        lay.addWidget(self.summary)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        lay.addWidget(self.table, 1)
        buttons = QHBoxLayout()
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.clicked.connect(self.refresh)
        self.export_button = QPushButton("Export CSV…")
        self.export_button.clicked.connect(self.export)
        buttons.addWidget(self.refresh_button)
        buttons.addWidget(self.export_button)
        buttons.addStretch(1)
        lay.addLayout(buttons)
        self.timer = QTimer(self)
        self.timer.timeout.connect(self.refresh)

    def showEvent(self, event) -> None:  # noqa: N802 - Qt API
        super().showEvent(event)
        self.timer.start(REFRESH_MS)  # refreshed only while shown
        self.refresh()

    def hideEvent(self, event) -> None:  # noqa: N802 - Qt API
        self.timer.stop()
        super().hideEvent(event)

    def save_ledger(self) -> None:
        try:
            save_ledger_setting(self.ledger.text().strip() or None)
        except FleetdeskError as exc:
            self.summary.setText(error_text(exc))
            return
        self.summary.setText("saved: stations started from now on use this ledger")
        self.refresh()

    def refresh(self) -> None:
        if self._busy:
            return
        self._busy = True

        def work() -> None:  # a plain thread: the page needs no asyncio loop
            try:
                result, error = read_line_status(), None
            except Exception as exc:  # noqa: BLE001 - shown on the page
                result, error = None, exc
            bridge.post(self._show, result, error)

        threading.Thread(target=work, name="line-status", daemon=True).start()

    def _show(self, status, error) -> None:
        import shiboken6

        if not shiboken6.isValid(self):  # the page was closed while the ledger answered
            return
        self._busy = False
        if error is not None:
            self.summary.setText(error_text(error) if isinstance(error, FleetdeskError) else str(error))
            return
        self.status = status
        self.table.setRowCount(len(status["stations"]))
        for i, s in enumerate(status["stations"]):
            causes = ", ".join(f"{k} {v}" for k, v in sorted(s["causes"].items()))
            for j, v in enumerate((s["station"] or "(unnamed)", s["state"], s["pass"], s["fail"],
                                   f"{s['boards_per_hour']:.1f}", s["open_runs"], causes)):
                self.table.setItem(i, j, QTableWidgetItem(str(v)))
        pool = status.get("pool")
        t = status["totals"]
        self.summary.setText(f"{redacted(status['ledger'])} since {status['since']}: PASS {t['pass']}, "
                             f"FAIL {t['fail']}, {t['stations_alive']} station(s) alive"
                             + (f"; pool {pool['free']} free, {pool['pending_sync']} pending sync" if pool else ""))

    def export(self, path: str | None = None) -> int:
        if self.status is None:
            return 0
        if not path:
            path, _ = QFileDialog.getSaveFileName(self, "Export the line", "line.csv", "CSV (*.csv)")
            if not path:
                return 0
        return write_csv(self.status, path)


def create_page(ctx: AppContext) -> QWidget:
    return LinePage(ctx)
