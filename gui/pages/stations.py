"""Stations page: a tile per port, START per tile / START ALL / STOP, factory auto-start,
settings (bundle, baud, identity, name template, operator) locked while boards flash.

All state lives in ``fleetdesk.boards.controller.StationController``; its callbacks arrive
on worker threads and only mark slots dirty (through gui.bridge); a 10 Hz timer repaints
the dirty tiles, so 16 boards flashing at once cost a few repaints per second.
"""

from __future__ import annotations

import threading

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from fleetdesk.boards.controller import StationController
from fleetdesk.boards.station import StationSettings
from fleetdesk.errors import FleetdeskError
from gui.widgets.port_tile import PortTile

BAUDS = ("115200", "230400", "460800", "921600")
MAX_COLUMNS = 4
TILE_WIDTH = 238  # a tile's minimum width plus the grid spacing


class StationsPage(QWidget):
    """The factory station.

    Args:
        ctx: the app context (None in tests); used for the sandbox state dir.
        controller: an existing controller (tests pass one with their own cloud/db).
    """

    def __init__(self, ctx=None, controller: StationController | None = None, parent=None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self._dirty: set[str] = set()
        self._dirty_lock = threading.Lock()
        self.controller = controller or StationController(StationSettings(), self._mark_dirty)
        self.controller.on_change = self._mark_dirty
        self.tiles: dict[str, PortTile] = {}
        self.locked = False
        self._build()
        self._timer = QTimer(self)
        self._timer.setInterval(100)
        self._timer.timeout.connect(self.refresh)
        self._timer.start()
        self.controller.start_watching()
        self.refresh()

    # --- layout -------------------------------------------------------------------------
    def _build(self) -> None:
        outer = QVBoxLayout(self)
        self.settings_box = QGroupBox("Station settings")
        form = QFormLayout(self.settings_box)
        row = QHBoxLayout()
        self.bundle = QLineEdit(self.controller.settings.bundle)
        self.bundle.setPlaceholderText("bundle dir, manifest.json, merged .bin or flasher_args.json")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        row.addWidget(self.bundle, 1)
        row.addWidget(browse)
        form.addRow("Firmware", row)
        self.baud = QComboBox()
        self.baud.addItems(BAUDS)
        self.baud.setCurrentText(str(self.controller.settings.baud))
        form.addRow("Baud", self.baud)
        self.identity = QCheckBox("Create thing + certificate and write the device config")
        self.identity.setChecked(self.controller.settings.identity)
        form.addRow("Identity", self.identity)
        self.template = QLineEdit(self.controller.settings.name_template)
        form.addRow("Thing name", self.template)
        self.operator = QLineEdit(self.controller.settings.operator)
        form.addRow("Operator", self.operator)
        self.product = QLineEdit(self.controller.settings.product or "")
        self.product.setPlaceholderText("product id written into the device config (optional)")
        form.addRow("Product", self.product)
        opts = QGridLayout()
        self.pool = QCheckBox("Offline: identities from the certificate pool")
        self.pool.setChecked(self.controller.settings.offline_pool)
        self.factory_reset = QCheckBox("Factory reset (new identity for known boards)")
        self.factory_reset.setChecked(self.controller.settings.factory_reset)
        self.repurpose = QCheckBox("Allow re-purpose of another product's boards")
        self.repurpose.setChecked(self.controller.settings.repurpose)
        self.refill_btn = QPushButton("Refill pool")
        self.refill_btn.setToolTip("While online: mint certificates until 16 are free, for flashing offline")
        self.refill_btn.clicked.connect(self._refill_pool)
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
        self.claim.setChecked(self.controller.settings.claim)
        self.claim_template = QLineEdit(self.controller.settings.claim_template)
        self.claim_template.setPlaceholderText("provisioning template (default fleetdesk-claim)")
        claim_row.addWidget(self.claim)
        claim_row.addWidget(self.claim_template, 1)
        form.addRow("Provisioning", claim_row)
        self.auto = QCheckBox("Auto-start on plug-in (factory mode)")
        self.auto.toggled.connect(lambda on: setattr(self.controller, "auto_start", on))
        form.addRow("", self.auto)
        self._inputs = [self.bundle, browse, self.baud, self.identity, self.template, self.operator, self.product,
                        self.pool, self.factory_reset, self.repurpose, self.claim, self.claim_template]
        outer.addWidget(self.settings_box)
        self.summary = QLabel()  # the locked settings in one line: the tiles get the room
        self.summary.setWordWrap(True)
        self.summary.setStyleSheet("padding:4px;background:#eceff1;border-radius:4px;")
        self.summary.setVisible(False)
        outer.addWidget(self.summary)

        bar = QHBoxLayout()
        self.lock_btn = QPushButton("Lock settings")
        self.lock_btn.clicked.connect(self.toggle_lock)
        self.start_all_btn = QPushButton("START ALL")
        self.start_all_btn.setStyleSheet("font-weight:bold;")
        self.start_all_btn.clicked.connect(self.start_all)
        self.stop_btn = QPushButton("STOP")
        self.stop_btn.clicked.connect(lambda: self.controller.stop())
        self.totals = QLabel()
        self.status = QLabel()
        self.status.setStyleSheet("color:#b71c1c;")
        for w in (self.lock_btn, self.start_all_btn, self.stop_btn):
            bar.addWidget(w)
        bar.addWidget(self.totals, 1)
        outer.addLayout(bar)
        outer.addWidget(self.status)

        self.grid_host = QWidget()
        self.grid = QGridLayout(self.grid_host)
        self.grid.setSpacing(8)
        self.grid.setAlignment(Qt.AlignTop | Qt.AlignLeft)
        self.empty = QLabel("No boards found. Plug in an ESP board (or start virtual boards: "
                            "`fleetdesk boards virtual --count 4`).")
        self.grid.addWidget(self.empty, 0, 0)
        self.scroll = scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.grid_host)
        outer.addWidget(scroll, 1)

    def _browse(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Firmware bundle")
        if path:
            self.bundle.setText(path)

    # --- settings lock ----------------------------------------------------------------
    def current_settings(self) -> StationSettings:
        s = self.controller.settings
        state_dir = None
        if self.ctx is not None:
            state_dir = self.ctx.cloud.endpoint.get("state_dir") or self.ctx.profile.state_dir
        return StationSettings(
            bundle=self.bundle.text().strip(), baud=int(self.baud.currentText()),
            identity=self.identity.isChecked() or self.claim.isChecked(),
            claim=self.claim.isChecked(), claim_template=self.claim_template.text().strip(),
            name_template=self.template.text().strip() or "fd-{mac}", operator=self.operator.text().strip(),
            station=s.station, product=self.product.text().strip() or None,
            sandbox_state_dir=state_dir or s.sandbox_state_dir, online_timeout=s.online_timeout,
            wait_online=s.wait_online, allowed_usb=s.allowed_usb, wifi=s.wifi, db_path=s.db_path,
            factory_reset=self.factory_reset.isChecked(), repurpose=self.repurpose.isChecked(),
            offline_pool=self.pool.isChecked(), boot_wait=s.boot_wait,
            profile=self.ctx.profile if self.ctx is not None else None)

    def lock(self) -> bool:
        """Apply and lock the settings; False (with the reason shown) when they are unusable."""
        try:
            settings = self.current_settings()
            if settings != self.controller.settings or self.controller._station is None:
                self.controller.apply_settings(settings)
                self.controller.station()  # loads and validates the bundle now, not per board
        except FleetdeskError as exc:
            self.status.setText(str(exc))
            return False
        self.status.setText("")
        self._set_locked(True)
        return True

    def _set_locked(self, locked: bool) -> None:
        self.locked = locked
        for w in self._inputs:
            w.setEnabled(not locked)
        self.lock_btn.setText("Unlock settings" if locked else "Lock settings")
        self.settings_box.setVisible(not locked)
        self.summary.setVisible(locked)
        if locked:
            self.summary.setText(self._summary_text(self.controller.settings))

    @staticmethod
    def _summary_text(s: StationSettings) -> str:
        if s.claim:
            ident = f"claim certificate ({s.claim_template or 'fleetdesk-claim'})"
        elif s.identity:
            ident = f"identity {s.name_template}" + (" from the offline pool" if s.offline_pool else "")
        else:
            ident = "no identity"
        extras = [x for x, on in (("factory reset", s.factory_reset), ("re-purpose allowed", s.repurpose)) if on]
        parts = [f"Firmware {s.bundle}", f"{s.baud} baud", ident, *extras]
        if s.product:
            parts.append(f"product {s.product}")
        if s.operator:
            parts.append(f"operator {s.operator}")
        return "Locked: " + " · ".join(parts)

    def toggle_lock(self) -> None:
        if not self.locked:
            self.lock()
        elif self.controller.busy:
            self.status.setText("Settings stay locked while boards are flashing: press STOP first.")
        else:
            self._set_locked(False)

    # --- actions -------------------------------------------------------------------------
    def start_all(self) -> int:
        if not self.locked and not self.lock():
            return 0
        if not self._ready():
            return 0
        n = self.controller.start_all()
        self.refresh()
        return n

    def _start(self, slot: str) -> None:
        if not self.locked and not self.lock():
            return
        if not self._ready():
            return
        self.controller.start(slot)
        self.refresh()

    def _ready(self) -> bool:
        """A station-level stop (e.g. an empty offline pool) is one message here, before any
        board starts, not a failure per board."""
        try:
            self.controller.station().check_ready()
        except FleetdeskError as exc:
            self.status.setText(str(exc))
            return False
        if not self.status.text().startswith("Settings stay locked"):
            self.status.setText("")
        return True

    def _rename(self, slot: str) -> None:
        current = self.controller.tiles[slot].label
        text, ok = QInputDialog.getText(self, "Slot label", "Name this slot (e.g. 'Jig A / 3'):", text=current)
        if ok:
            self.controller.set_label(slot, text.strip())

    def _allow_usb(self, slot: str) -> None:
        state = self.controller.tiles.get(slot)
        if state is None:
            return
        answer = QMessageBox.question(
            self, "Allow this USB device?",
            f"{state.port} is a USB device with id {state.usb_id}, which is not a known ESP USB bridge.\n\n"
            "Allow it only if it is an ESP board: the station will send it bootloader sync bytes "
            "(harmful to a phone, a GPS or a 3D printer). The choice is saved for this station.")
        if answer == QMessageBox.Yes:
            try:
                self.status.setText(f"USB id {self.controller.allow_usb(slot)} is now probed on this station")
            except FleetdeskError as exc:
                self.status.setText(str(exc))

    def _refill_pool(self, count: int = 16) -> threading.Thread:
        """Refill the offline pool in the background; the outcome shows in the status line."""
        self.refill_btn.setEnabled(False)
        self.status.setText("Refilling the certificate pool…")

        def work() -> None:
            try:
                added = self.controller.refill_pool(count)
                self._pool_msg = f"Certificate pool refilled: {added} added, {self.controller.pool_level()} free"
            except FleetdeskError as exc:
                self._pool_msg = f"Could not refill the pool: {exc}"
            except Exception as exc:  # noqa: BLE001 - shown, never a silent thread death
                self._pool_msg = f"Could not refill the pool: {type(exc).__name__}: {exc}"
            self._mark_dirty("*")

        t = threading.Thread(target=work, daemon=True, name="pool refill")
        t.start()
        return t

    def _export(self, slot: str) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export board record", f"{slot.replace(':', '_')}.zip",
                                              "Zip (*.zip)")
        if path:
            try:
                self.controller.export(slot, path)
                self.status.setText(f"Exported {path}")
            except FleetdeskError as exc:
                self.status.setText(str(exc))

    # --- repaint -------------------------------------------------------------------------
    def _mark_dirty(self, slot: str) -> None:  # any thread
        with self._dirty_lock:
            self._dirty.add(slot)

    def refresh(self) -> None:
        """Repaint dirty tiles and totals (the 10 Hz timer calls this)."""
        with self._dirty_lock:
            dirty, self._dirty = self._dirty, set()
        for slot, state in list(self.controller.tiles.items()):
            tile = self.tiles.get(slot)
            if tile is None:
                tile = PortTile(slot)
                tile.start_clicked.connect(self._start)
                tile.stop_clicked.connect(self.controller.stop)
                tile.rename_requested.connect(self._rename)
                tile.export_requested.connect(self._export)
                tile.restore_requested.connect(self.controller.restore_identity)
                tile.new_identity_requested.connect(self.controller.new_identity)
                tile.allow_usb_requested.connect(self._allow_usb)
                self.tiles[slot] = tile
                self.empty.setVisible(False)
                dirty.add(slot)
            if slot in dirty:
                tile.update_from(state)
        self._layout_tiles()
        msg, self._pool_msg = getattr(self, "_pool_msg", None), None
        if msg is not None:
            self.status.setText(msg)
            self.refill_btn.setEnabled(True)
        t = self.controller.totals()
        pool = f"   certificate pool {t['pool']}" if "pool" in t else ""
        pool += f"   ⚠ waiting for your decision {t['decide']}" if t.get("decide") else ""
        self.totals.setText(f"Total  ✔ PASS {t['PASS']}   ✘ FAIL {t['FAIL']}   running {t['running']}   "
                            f"slots {t['slots']}{pool}")
        busy = t["running"] > 0
        if not busy and self.status.text().startswith("Settings stay locked"):
            self.status.setText("")
        self.stop_btn.setEnabled(busy)
        self.lock_btn.setEnabled(not busy or not self.locked)

    def _layout_tiles(self) -> None:
        """Tiles in slot-label order (the jig's physical order), re-placed only when it changes."""
        tiles = self.controller.tiles
        order = sorted(self.tiles, key=lambda s: (tiles[s].label == "", tiles[s].label or tiles[s].port))
        cols = max(1, min(MAX_COLUMNS, (self.scroll.viewport().width() - 16) // TILE_WIDTH))
        if (order, cols) == getattr(self, "_order", None):
            return
        self._order = (order, cols)
        for i, slot in enumerate(order):
            self.grid.addWidget(self.tiles[slot], i // cols, i % cols)

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt API
        super().resizeEvent(event)
        self._layout_tiles()  # as many columns as fit (a narrow window scrolls down, not sideways)

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt API
        self._timer.stop()
        self.controller.close()
        super().closeEvent(event)


def create_page(ctx) -> QWidget:
    """Page factory for gui.main_window.PAGES."""
    return StationsPage(ctx)
