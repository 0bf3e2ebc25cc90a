"""BLE Setup's right-hand side: the steps line, and a box per step (Connect + PoP, Wi-Fi,
cloud and certificates with a bar per file), then the message and Retry."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)


STEPS = ("connect", "wifi", "cloud", "certificates", "commit", "online")
STEP_TITLES = {"connect": "Connect + PoP", "wifi": "Wi-Fi", "cloud": "Cloud", "certificates": "Certificates",
               "commit": "Commit", "online": "Online"}
MARK = {"todo": "○", "busy": "◐", "done": "●", "error": "✖"}


def rssi_bars(rssi: int) -> str:
    """Four-bar signal strength text for a dBm value."""
    n = 4 if rssi >= -55 else 3 if rssi >= -67 else 2 if rssi >= -80 else 1
    return "▮" * n + "▯" * (4 - n) + f"  {rssi} dBm"


def _step_box(title: str, rows: list[tuple[str, QWidget]], button: QPushButton) -> QGroupBox:
    """One step's box: labelled rows (an empty label: the widget alone in the field column),
    then the step's button across the form."""
    box = QGroupBox(title)
    f = QFormLayout(box)
    for label, widget in rows:
        f.addRow(label, widget)
    f.addRow(button)
    return box


class BleStepsPanel(QWidget):
    """The inputs and buttons; the page connects the buttons to its steps."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        rv = QVBoxLayout(self)
        rv.setContentsMargins(0, 0, 0, 0)
        self.steps_label = QLabel()
        self.steps_label.setTextFormat(Qt.TextFormat.RichText)
        rv.addWidget(self.steps_label)

        self.device_label = QLabel("no board selected")
        self.pop_edit = QLineEdit()
        self.pop_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.pop_edit.setPlaceholderText("proof-of-possession from the production record / label")
        self.connect_button = QPushButton("Connect")
        self.factory_pop_button = QPushButton("Flashed without identity? Use its MAC")
        self.factory_pop_button.setVisible(False)
        rv.addWidget(_step_box("1. Connect", [("Board", self.device_label), ("PoP", self.pop_edit),
                                              ("", self.factory_pop_button)], self.connect_button))

        self.ssid_combo = QComboBox()
        self.ssid_combo.setEditable(True)
        self.wifi_pass = QLineEdit()
        self.wifi_pass.setEchoMode(QLineEdit.EchoMode.Password)
        self.wifi_button = QPushButton("Send Wi-Fi")
        rv.addWidget(_step_box("2. Wi-Fi", [("Network", self.ssid_combo), ("Password", self.wifi_pass)],
                               self.wifi_button))

        self.thing_edit = QLineEdit()
        self.thing_edit.setPlaceholderText("thing name")
        self.create_check = QCheckBox("create the thing and its certificate in the active profile")
        self.create_check.setChecked(True)
        self.endpoint_label = QLabel("")
        self.endpoint_label.setStyleSheet("color: #52606d;")
        self.bars: dict[str, QProgressBar] = {}
        bar_rows: list[tuple[str, QWidget]] = []
        for name, title in (("ca", "CA"), ("cert", "Certificate"), ("key", "Private key")):
            bar = QProgressBar()
            bar.setFormat("%p%")
            bar.setValue(0)
            self.bars[name] = bar
            bar_rows.append((title, bar))
        self.provision_button = QPushButton("Send and commit")
        rv.addWidget(_step_box("3. Cloud and certificates", [("Thing", self.thing_edit), ("", self.create_check),
                                                             ("Endpoint", self.endpoint_label), *bar_rows],
                               self.provision_button))

        row = QHBoxLayout()
        self.message = QLabel("")
        self.message.setWordWrap(True)
        self.retry_button = QPushButton("Retry")
        self.retry_button.setEnabled(False)
        row.addWidget(self.message, 1)
        row.addWidget(self.retry_button)
        rv.addLayout(row)
        rv.addStretch(1)

    def show_steps(self, step_state: dict[str, str]) -> None:
        """The steps line: ○ to do, ◐ busy, ● done, ✖ failed, in colour."""
        parts = []
        for s in STEPS:
            st = step_state[s]
            color = {"done": "#2e7d32", "error": "#c62828", "busy": "#1565c0"}.get(st, "#777")
            parts.append(f'<span style="color:{color}">{MARK[st]} {STEP_TITLES[s]}</span>')
        self.steps_label.setText(" &nbsp;→&nbsp; ".join(parts))
