"""Fleet → Set desired: one dialog with the keys the firmware takes, a valid default per key,
what is valid said under the value, and a value the firmware would refuse never accepted."""

from __future__ import annotations

import json
from typing import Any

from PySide6.QtWidgets import QComboBox, QDialog, QDialogButtonBox, QFormLayout, QLabel, QLineEdit, QWidget

from fleetdesk.cloud.desired import KEYS, default_text, problem


def parse_value(text: str) -> Any:
    """JSON if it parses (``true``, ``5000``, ``"x"``), else the text as a string."""
    try:
        return json.loads(text)
    except ValueError:
        return text


class DesiredDialog(QDialog):
    """Key + value for ``count`` things; :meth:`result_value` after ``exec()`` accepted."""

    def __init__(self, count: int, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Set desired")
        self.setMinimumWidth(440)  # the title and the hints are read whole, not "Set de…"
        form = QFormLayout(self)
        form.addRow(QLabel(f"The same desired value on {count} thing(s):"))
        self.key = QComboBox()
        self.key.setEditable(True)
        self.key.addItems(list(KEYS))
        self.value = QLineEdit()
        self.hint = QLabel()
        self.hint.setWordWrap(True)
        self.hint.setStyleSheet("color:#52606d;")
        form.addRow("Key", self.key)
        form.addRow("Value (JSON)", self.value)
        form.addRow("", self.hint)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        form.addRow(self.buttons)
        self.key.currentTextChanged.connect(self._key_changed)
        self.value.textChanged.connect(self._check)
        self._key_changed(self.key.currentText())

    def _key_changed(self, key: str) -> None:
        self.value.setText(default_text(key))
        self._check()

    def _check(self, *_args: Any) -> bool:
        key = self.key.currentText().strip()
        why = problem(key, parse_value(self.value.text())) if key else "give a key"
        spec = KEYS.get(key)
        self.hint.setText(why or (f"{key}: {spec.valid}" if spec else ""))
        self.hint.setStyleSheet("color:#b3261e;" if why else "color:#52606d;")
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(why is None)
        return why is None

    def accept(self) -> None:
        if self._check():
            super().accept()

    def result_value(self) -> tuple[str, Any]:
        return self.key.currentText().strip(), parse_value(self.value.text())
