"""Diagnostics: malformed payloads and other anomalies counted by the fleet model."""

from __future__ import annotations

import datetime

from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QTableWidget, QTableWidgetItem, QVBoxLayout


class DiagnosticsDialog(QDialog):
    """Counters (``FleetState.diagnostics``) and the most recent problems with their payloads."""

    def __init__(self, fleet, parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Diagnostics")
        self.resize(820, 480)
        layout = QVBoxLayout(self)
        self.counters = QLabel()
        self.counters.setObjectName("diagCounters")
        self.counters.setWordWrap(True)
        layout.addWidget(self.counters)
        self.table = QTableWidget(0, 5)
        self.table.setObjectName("diagProblems")
        self.table.setHorizontalHeaderLabels(["Time", "Kind", "Thing", "Error", "Payload"])
        self.table.horizontalHeader().setStretchLastSection(True)
        layout.addWidget(self.table, 1)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self.fleet = fleet
        self.refresh()

    def refresh(self) -> None:
        """Reload counters and problems from the fleet model."""
        fleet = self.fleet
        if fleet is None:
            self.counters.setText("Not connected.")
            return
        counts = sorted(fleet.diagnostics.items())
        self.counters.setText("  ·  ".join(f"{k}: {v}" for k, v in counts) or "No messages yet.")
        problems = list(fleet.problems)[::-1]
        self.table.setRowCount(len(problems))
        for r, p in enumerate(problems):
            when = datetime.datetime.fromtimestamp(p.get("at", 0)).strftime("%H:%M:%S")
            for c, v in enumerate((when, p.get("kind"), p.get("thing") or "", p.get("error"), p.get("payload") or "")):
                self.table.setItem(r, c, QTableWidgetItem(str(v)))
        self.table.resizeColumnsToContents()
