"""The Stations page's settings form: firmware (a file, a folder or the built-in firmware,
with what the bundle holds shown before START), baud, identity options, operator; remembered
across restarts in the app's QSettings."""

from __future__ import annotations

from PySide6.QtCore import QSettings, QTimer
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QWidget,
)

from fleetdesk.boards.station import StationSettings
from fleetdesk.errors import FleetdeskError
from fleetdesk_gui import bridge

BAUDS = ("115200", "230400", "460800", "921600")
FIRMWARE_FILTER = "Firmware bundles (manifest.json flasher_args.json *.bin);;All files (*)"
# what the form remembers (QSettings key -> widget attribute); the bundle path first
REMEMBERED = ("bundle", "baud", "identity", "template", "operator", "product", "pool", "factory_reset",
              "repurpose", "claim", "claim_template", "line_ca", "auto")
OK, BAD = "color:#1b5e20;", "color:#b71c1c;"


class StationForm(QGroupBox):
    """The settings inputs; ``inputs`` are what locking disables."""

    def __init__(self, s: StationSettings, settings: QSettings | None = None, parent: QWidget | None = None) -> None:
        super().__init__("Station settings", parent)
        self.qsettings = settings
        form = QFormLayout(self)
        row = QHBoxLayout()
        self.bundle = QLineEdit(s.bundle)
        self.bundle.setPlaceholderText("bundle folder, manifest.json, merged .bin or flasher_args.json")
        self.browse = QPushButton("Browse…")
        self.browse.setToolTip("Pick a bundle's manifest.json, a merged .bin or an ESP-IDF flasher_args.json")
        self.browse.clicked.connect(self._browse)
        self.builtin = QPushButton("Built-in firmware")
        self.builtin.setToolTip("This app's own firmware, built for ESP32 the first time (virtual boards boot it; "
                                "a real board needs `fleetdesk firmware build --base <MicroPython .bin>`)")
        self.builtin.clicked.connect(self.use_builtin)
        row.addWidget(self.bundle, 1)
        row.addWidget(self.browse)
        row.addWidget(self.builtin)
        form.addRow("Firmware", row)
        self.bundle_info = QLabel("")  # what the chosen bundle holds, before START
        self.bundle_info.setWordWrap(True)
        form.addRow("", self.bundle_info)
        self.baud = QComboBox()
        self.baud.addItems(BAUDS)
        self.baud.setCurrentText(str(s.baud))
        form.addRow("Baud", self.baud)
        self.identity = QCheckBox("Create thing + certificate and write the device config")
        self.identity.setChecked(s.identity)
        form.addRow("Identity", self.identity)
        self.template = QLineEdit(s.name_template)
        form.addRow("Thing name", self.template)
        self.operator = QLineEdit(s.operator)
        form.addRow("Operator", self.operator)
        self.product = QLineEdit(s.product or "")
        self.product.setPlaceholderText("product id written into the device config (optional)")
        form.addRow("Product", self.product)
        opts = QGridLayout()
        self.pool = QCheckBox("Offline: identities from the certificate pool")
        self.pool.setChecked(s.offline_pool)
        self.factory_reset = QCheckBox("Factory reset (new identity for known boards)")
        self.factory_reset.setChecked(s.factory_reset)
        self.repurpose = QCheckBox("Allow re-purpose of another product's boards")
        self.repurpose.setChecked(s.repurpose)
        self.refill_btn = QPushButton("Refill pool")
        self.refill_btn.setToolTip("While online: mint certificates until 16 are free, for flashing offline")
        opts.addWidget(self.pool, 0, 0)
        opts.addWidget(self.refill_btn, 0, 1)
        opts.addWidget(self.factory_reset, 1, 0)
        opts.addWidget(self.repurpose, 1, 1, 1, 2)
        opts.setColumnStretch(2, 1)
        form.addRow("Options", opts)
        claim_row = QHBoxLayout()
        self.claim = QCheckBox("Claim certificate (boards provision themselves)")
        self.claim.setToolTip("One claim certificate for every board; each board gets its own identity from the "
                              "cloud by fleet provisioning (no cloud call per board while flashing)")
        self.claim.setChecked(s.claim)
        self.claim_template = QLineEdit(s.claim_template)
        self.claim_template.setPlaceholderText("provisioning template (default fleetdesk-claim)")
        claim_row.addWidget(self.claim)
        claim_row.addWidget(self.claim_template, 1)
        form.addRow("Provisioning", claim_row)
        self.line_ca = QCheckBox("Line CA: sign certificates here, JITP")
        self.line_ca.setToolTip("Each board's certificate is signed on this station with the line's CA (its folder "
                                "copied from the admin machine, which registered it once); the cloud creates the "
                                "thing at the board's first connect. No AWS credentials on this station.")
        self.line_ca.setChecked(s.line_ca)
        form.addRow("", self.line_ca)
        self.auto = QCheckBox("Auto-start on plug-in (factory mode)")
        form.addRow("", self.auto)
        self.inputs = [self.bundle, self.browse, self.builtin, self.baud, self.identity, self.template, self.operator,
                       self.product, self.pool, self.factory_reset, self.repurpose, self.claim, self.claim_template,
                       self.line_ca]
        self._describe_timer = QTimer(self)
        self._describe_timer.setSingleShot(True)
        self._describe_timer.setInterval(300)  # describe once typing pauses, not per key
        self._describe_timer.timeout.connect(self.describe_bundle)
        self.bundle.textChanged.connect(lambda _t: self._describe_timer.start())
        self.restore()
        self.describe_bundle()

    # --- firmware ---------------------------------------------------------------------
    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Firmware bundle", self.bundle.text().strip(), FIRMWARE_FILTER)
        if path:
            self.bundle.setText(path)

    def use_builtin(self) -> None:
        """Build (first time) or reuse the app's own firmware bundle and choose it."""
        from fleetdesk.boards.default_firmware import default_bundle

        self.builtin.setEnabled(False)
        self._show("Building the built-in firmware…", OK)

        def done(path, error) -> None:
            self.builtin.setEnabled(True)
            if error is not None:
                self._show(f"Could not build the built-in firmware: {getattr(error, 'message', None) or error}", BAD)
                return
            self.bundle.setText(str(path))
            self.describe_bundle()

        bridge.run_blocking(default_bundle, on_done=done)

    def describe_bundle(self) -> bool:
        """Show what the chosen bundle holds (chip, version, parts, size) or why it is not one."""
        from fleetdesk.boards.default_firmware import describe

        path = self.bundle.text().strip()
        if not path:
            self._show("No firmware chosen: Browse…, or press Built-in firmware to use this app's own.", BAD)
            return False
        try:
            self._show(describe(path), OK)
            return True
        except FleetdeskError as exc:
            self._show(exc.message + (f" → {exc.advice}" if exc.advice else ""), BAD)
            return False

    def _show(self, text: str, style: str) -> None:
        self.bundle_info.setText(text)
        self.bundle_info.setStyleSheet(style)

    # --- remembered settings --------------------------------------------------------------
    def restore(self) -> None:
        """Put back what the last session used (nothing stored: the defaults stay)."""
        q = self.qsettings
        if q is None:
            return
        for key in REMEMBERED:
            value = q.value(f"station/{key}")
            if value is None:
                continue
            widget = getattr(self, key)
            if isinstance(widget, QCheckBox):
                widget.setChecked(str(value).lower() == "true")
            elif isinstance(widget, QComboBox):
                if widget.findText(str(value)) >= 0:
                    widget.setCurrentText(str(value))
            else:
                widget.setText(str(value))

    def remember(self) -> None:
        """Store the form for the next start (called when the settings are applied)."""
        q = self.qsettings
        if q is None:
            return
        for key in REMEMBERED:
            widget = getattr(self, key)
            value = (widget.isChecked() if isinstance(widget, QCheckBox) else
                     widget.currentText() if isinstance(widget, QComboBox) else widget.text())
            q.setValue(f"station/{key}", "true" if value is True else "false" if value is False else value)
        q.sync()
