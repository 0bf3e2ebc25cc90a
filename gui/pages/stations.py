"""Stations page: a tile per port, START per tile / START ALL / STOP, factory auto-start,
settings (bundle, baud, identity, name template, operator) locked while boards flash.

All state lives in ``fleetdesk.boards.controller.StationController``; its callbacks arrive
on worker threads and only mark slots dirty (through fleetdesk_gui.bridge); a 10 Hz timer repaints
the dirty tiles, so 16 boards flashing at once cost a few repaints per second.
"""

from __future__ import annotations

from PySide6.QtCore import QSettings, Qt, QTimer
from PySide6.QtWidgets import (
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QMessageBox,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from fleetdesk.boards.controller import StationController
from fleetdesk.boards.station import StationSettings
from fleetdesk.errors import FleetdeskError
from fleetdesk.paths import home_relative
from fleetdesk_gui import bridge
from fleetdesk_gui.widgets.port_tile import PortTile
from fleetdesk_gui.widgets.station_form import BAD, OK, StationForm
MAX_COLUMNS = 4
TILE_WIDTH = 238  # a tile's minimum width plus the grid spacing


class StationsPage(QWidget):
    """The factory station.

    Args:
        ctx: the app context (None in tests); used for the sandbox state dir and its QSettings.
        controller: an existing controller (tests pass one with their own cloud/db).
        settings: where the form and the per-slot counters are remembered (default: the
            context's QSettings; None without a context: nothing is remembered).
    """

    def __init__(self, ctx=None, controller: StationController | None = None, parent=None,
                 settings: QSettings | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.qsettings = settings if settings is not None else (ctx.settings if ctx is not None else None)
        self._dirty: set[str] = set()
        bridge.instance()  # made on the Qt thread, before a worker posts to it
        mark = bridge.on_qt(self._mark_dirty)  # controller callbacks come from worker threads
        self.controller = controller or StationController(StationSettings(), mark)
        self.controller.on_change = mark
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
        settings = self.qsettings
        self.settings_box = self.form = StationForm(self.controller.settings, settings)
        f = self.form  # the inputs keep their names on the page (tests and shortcuts use them)
        for name in ("bundle", "baud", "identity", "template", "operator", "product", "pool", "factory_reset",
                     "repurpose", "refill_btn", "claim", "claim_template", "line_ca", "auto", "bundle_info"):
            setattr(self, name, getattr(f, name))
        self.refill_btn.clicked.connect(self._refill_pool)
        # a new path answers the last "no firmware bundle chosen" / bad-bundle line: the form now says
        self.bundle.textChanged.connect(lambda _t: self.status.setText("") if not self.locked else None)
        self.auto.toggled.connect(lambda on: setattr(self.controller, "auto_start", on))
        self.controller.auto_start = self.auto.isChecked()
        self._inputs = f.inputs
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
        self.status.setWordWrap(True)
        self.status.setStyleSheet(BAD)
        self.records_btn = QPushButton("Export records…")
        self.records_btn.setToolTip("Every flash attempt of this station's production record, as CSV")
        self.records_btn.clicked.connect(self._export_records)
        for w in (self.lock_btn, self.start_all_btn, self.stop_btn, self.records_btn):
            bar.addWidget(w)
        bar.addWidget(self.totals, 1)
        outer.addLayout(bar)
        outer.addWidget(self.status)

        self.grid_host = QWidget()
        self.grid = QGridLayout(self.grid_host)
        self.grid.setSpacing(8)
        self.grid.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.empty = QLabel("No boards found. Plug in an ESP board (or start virtual boards: "
                            "`fleetdesk boards virtual --count 4`).")
        self.grid.addWidget(self.empty, 0, 0)
        self.scroll = scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.grid_host)
        outer.addWidget(scroll, 1)

    # --- settings lock ----------------------------------------------------------------
    def current_settings(self) -> StationSettings:
        s = self.controller.settings
        state_dir = None
        if self.ctx is not None:
            state_dir = self.ctx.cloud.endpoint.get("state_dir") or self.ctx.profile.state_dir
        return StationSettings(
            bundle=self.bundle.text().strip(), baud=int(self.baud.currentText()),
            identity=self.identity.isChecked() or self.claim.isChecked() or self.line_ca.isChecked(),
            claim=self.claim.isChecked(), claim_template=self.claim_template.text().strip(),
            line_ca=self.line_ca.isChecked(), line_ca_dir=s.line_ca_dir,
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
            self._say(str(exc))
            return False
        self.status.setText("")
        self.form.remember()  # the next start of the app begins where this one left off
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
        elif s.line_ca:
            ident = f"identity {s.name_template} signed by the line CA (JITP)"
        elif s.identity:
            ident = f"identity {s.name_template}" + (" from the offline pool" if s.offline_pool else "")
        else:
            ident = "no identity"
        extras = [x for x, on in (("factory reset", s.factory_reset), ("re-purpose allowed", s.repurpose)) if on]
        parts = [f"Firmware {home_relative(s.bundle)}", f"{s.baud} baud", ident, *extras]
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
            self._say(str(exc))
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
        if answer == QMessageBox.StandardButton.Yes:
            try:
                self._say(f"USB id {self.controller.allow_usb(slot)} is now probed on this station", ok=True)
            except FleetdeskError as exc:
                self._say(str(exc))

    def _refill_pool(self, count: int = 16):
        """Refill the offline pool in the background; the outcome shows in the status line
        (the controller's worker thread reports through the bridge)."""
        self.refill_btn.setEnabled(False)
        self._say("Refilling the certificate pool…", ok=True)
        return self.controller.start_refill(count, bridge.on_qt(self._refilled))

    def _refilled(self, ok: bool, message: str) -> None:
        self.refill_btn.setEnabled(True)
        self._say(message, ok=ok)

    def _export(self, slot: str) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export board record", f"{slot.replace(':', '_')}.zip",
                                              "Zip (*.zip)")
        if path:
            try:
                self.controller.export(slot, path)
                self._say(f"Exported {path}", ok=True)
            except FleetdeskError as exc:
                self._say(str(exc))

    def _export_records(self, path: str | None = None) -> None:
        """Save the production record as CSV (``path`` given: no dialog)."""
        if path is None:
            path, _ = QFileDialog.getSaveFileName(self, "Export production records", "production.csv", "CSV (*.csv)")
        if path:
            try:
                self._say(f"Exported {self.controller.export_records(path)} attempt(s) to {path}", ok=True)
            except FleetdeskError as exc:
                self._say(str(exc))

    def _say(self, text: str, ok: bool = False) -> None:
        """The status line: red for a problem, green for a done action."""
        self.status.setText(text)
        self.status.setStyleSheet(OK if ok else BAD)

    # --- repaint -------------------------------------------------------------------------
    def _mark_dirty(self, slot: str) -> None:  # the Qt thread (through the bridge)
        self._dirty.add(slot)

    def refresh(self) -> None:
        """Repaint dirty tiles and totals (the 10 Hz timer calls this)."""
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
                self._load_counters(slot, state)
            if slot in dirty or tile.changed(state):  # a repaint only when what the tile shows changed
                tile.update_from(state)
                self._save_counters(slot, state)
        self._layout_tiles()
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

    def _counter_key(self, slot: str) -> str:
        return "station/counters/" + slot.replace("/", "|")

    def _load_counters(self, slot: str, state) -> None:
        """A slot's PASS/FAIL counts from the last session (kept across restarts)."""
        if self.qsettings is None or state.passed or state.failed:
            return
        saved = str(self.qsettings.value(self._counter_key(slot), "") or "")
        if saved.count(",") == 1 and saved.replace(",", "").isdigit():
            state.passed, state.failed = (int(x) for x in saved.split(","))

    def _save_counters(self, slot: str, state) -> None:
        if self.qsettings is not None and (state.passed or state.failed):
            value = f"{state.passed},{state.failed}"
            if self.qsettings.value(self._counter_key(slot)) != value:
                self.qsettings.setValue(self._counter_key(slot), value)

    def _layout_tiles(self) -> None:
        """Tiles in slot-label order (the jig's physical order), re-placed only when it changes."""
        tiles = self.controller.tiles
        seen = {slot: i for i, slot in enumerate(self.tiles)}  # unlabelled slots stay where they first appeared
        order = sorted(self.tiles, key=lambda s: (tiles[s].label == "", tiles[s].label, seen[s]))
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
    """Page factory for fleetdesk_gui.main_window.PAGES."""
    return StationsPage(ctx)
