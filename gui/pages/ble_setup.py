"""BLE Setup page: live scan list (name, address, RSSI bars, state), then the steps
connect -> PoP -> Wi-Fi -> cloud -> certificates -> commit -> online, each with a clear error
and a Retry that resumes (file transfers continue where the board says).

Thin over fleetdesk.ble: scanning, the provisioning client, the cloud target and waiting for
the board to come online all live there; the backend (radio or virtual boards) is chosen by
fleetdesk.ble.backends, never here.
"""

from __future__ import annotations

from typing import Any, Callable

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from fleetdesk.ble.naming import factory_pop, thing_name
from fleetdesk_gui import bridge
from fleetdesk_gui.widgets.ble_steps import STEP_TITLES, STEPS, BleStepsPanel, rssi_bars
from fleetdesk_gui.widgets.table_cell import cell_text
from fleetdesk_gui.context import AppContext

SCAN_SECONDS = 4.0


class BleSetupPage(QWidget):
    """The page. Public methods are the steps (the tests drive them like a user would)."""

    def __init__(self, ctx: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.found: dict[str, Any] = {}
        self.prov: Any = None
        self.thing = ""
        self.step_state = {s: "todo" for s in STEPS}
        self._retry: Callable[[], None] | None = None
        self._address = ""  # the board the steps are about
        self._build()

    # ---- layout -------------------------------------------------------------------------
    def _build(self) -> None:
        heading = QLabel("<h2>BLE Setup</h2>")
        split = QSplitter(Qt.Orientation.Horizontal, self)
        left = QWidget()
        lv = QVBoxLayout(left)
        row = QHBoxLayout()
        self.scan_button = QPushButton("Scan")
        self.scan_button.clicked.connect(self.start_scan)
        self.scan_status = QLabel("")
        self.scan_status.setWordWrap(True)
        self.batch_button = QPushButton("Batch…")
        self.batch_button.setToolTip("Many boards from a CSV sheet, several at once")
        self.batch_button.clicked.connect(self.open_batch)
        row.addWidget(self.scan_button)
        row.addWidget(self.scan_status, 1)
        row.addWidget(self.batch_button)
        lv.addLayout(row)
        self.table = QTableWidget(0, 4)
        self.table.setHorizontalHeaderLabels(["Name", "Address", "Signal", "State"])
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        header = self.table.horizontalHeader()
        for col in range(3):  # name, address, signal read whole at 1024 px; the state takes the rest
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(3, QHeaderView.ResizeMode.Stretch)
        self.table.itemSelectionChanged.connect(self._selected)
        lv.addWidget(self.table)
        split.addWidget(left)

        right = self._panel = BleStepsPanel()
        for name in ('bars', 'connect_button', 'create_check', 'device_label', 'endpoint_label', 'factory_pop_button', 'message', 'pop_edit', 'provision_button', 'retry_button', 'ssid_combo', 'steps_label', 'thing_edit', 'wifi_button', 'wifi_pass'):
            setattr(self, name, getattr(right, name))  # the page's inputs keep their names
        self._panel.connect_button.clicked.connect(self.connect_board)
        self._panel.factory_pop_button.clicked.connect(self.use_factory_pop)
        self._panel.wifi_button.clicked.connect(self.send_wifi)
        self._panel.provision_button.clicked.connect(self.send_cloud_and_commit)
        self._panel.retry_button.clicked.connect(self.retry)
        split.addWidget(right)
        split.setSizes([460, 520])
        layout = QVBoxLayout(self)
        layout.addWidget(heading)
        layout.addWidget(split, 1)
        self._render_steps()
        self._show_endpoint_hint()
        self._show_radio()
        self.ctx.profile_changed.connect(self._show_radio)

    # ---- helpers ---------------------------------------------------------------------------
    def _set_step(self, step: str, state: str) -> None:
        self.step_state[step] = state
        self._render_steps()
        busy = "busy" in self.step_state.values()
        for button in (self._panel.connect_button, self._panel.wifi_button, self._panel.provision_button):
            button.setEnabled(not busy)  # one step at a time: no double submits
        self.table.setEnabled(not busy)  # no switching boards in the middle of a step

    def _render_steps(self) -> None:
        self._panel.show_steps(self.step_state)

    def _say(self, text: str, error: bool = False) -> None:
        self._panel.message.setStyleSheet("color: #c62828;" if error else "")
        self._panel.message.setText(text)

    def _fail(self, step: str, exc: BaseException, retry: Callable[[], None]) -> None:
        self._set_step(step, "error")
        text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        advice = getattr(exc, "advice", None)
        self._say(f"{STEP_TITLES[step]} failed: {text}" + (f"\n→ {advice}" if advice else ""), error=True)
        self._retry = retry
        self._panel.retry_button.setEnabled(True)

    def retry(self) -> None:
        """Run the failed step again (transfers resume where the board stopped)."""
        if self._retry is not None:
            self._panel.retry_button.setEnabled(False)
            self._retry()

    # ---- scan --------------------------------------------------------------------------------
    def start_scan(self) -> None:
        """Scan for boards advertising the provisioning service; the list fills live."""
        from fleetdesk.ble.backends import ble_backends
        from fleetdesk.ble.scanner import scan

        scanner_backend, _ = ble_backends(profile=self.ctx.profile)
        self.scan_button.setEnabled(False)
        self.scan_status.setText("Scanning…")
        bridge.submit(scan(SCAN_SECONDS, backend=scanner_backend, on_found=lambda f: bridge.post(self._found, f)),
                      self._scan_done)

    def _found(self, item: Any) -> None:
        self.found[item.address] = item
        rows = [cell_text(self.table, r, 1) for r in range(self.table.rowCount())]
        row = rows.index(item.address) if item.address in rows else self.table.rowCount()
        if row == self.table.rowCount():
            self.table.insertRow(row)
        state = {True: "provisioned", False: "needs setup", None: "?"}[item.provisioned]
        for col, text in enumerate((item.name, item.address, rssi_bars(item.rssi).split("  ")[0], state)):
            cell = QTableWidgetItem(text)
            if col == 2:
                cell.setToolTip(f"{item.rssi} dBm")  # the bars in the cell: the list fits 1024 px
            self.table.setItem(row, col, cell)

    def _scan_done(self, result: Any, error: BaseException | None) -> None:
        self.scan_button.setEnabled(True)
        if error is not None:
            text = getattr(error, "message", None) or str(error) or type(error).__name__
            advice = getattr(error, "advice", None)
            self.scan_status.setText(f"Scan failed: {text}" + (f"\n→ {advice}" if advice else ""))
            self.scan_status.setStyleSheet("color: #c62828;")
            return
        self.scan_status.setStyleSheet("")
        if not self.found:
            if self.radio_text() == "virtual boards":
                self.scan_status.setText("No virtual board is advertising. A board flashed firmware-only (Stations, "
                                         "no identity) boots into Config mode and shows here; scan again then. "
                                         "For real boards choose Bluetooth: this computer's radio in Settings.")
            else:
                self.scan_status.setText("No boards found. A board without Wi-Fi and certificates advertises in "
                                         "Config mode: power it near this computer and scan again.")
            return
        self.scan_status.setText(f"{len(self.found)} board(s) found")
        if len(self.found) == 1 and not self.table.selectedItems():
            self.table.selectRow(0)

    def _selected(self) -> None:
        rows = self.table.selectionModel().selectedRows()
        if rows:
            item = self.found.get(cell_text(self.table, rows[0].row(), 1))
            if item is not None:
                if item.address != self._address:
                    self._start_over(item)
                self._panel.device_label.setText(f"{item.name}  ({item.address})")
                if not self._panel.thing_edit.text():
                    self._panel.thing_edit.setText(thing_name(item.address, item.name.lower()))

    def _start_over(self, item: Any) -> None:
        """Another board was picked: its own steps from the start (the Wi-Fi typed stays)."""
        if self.prov is not None:
            bridge.submit(self.prov.close())
            self.prov = None
        self._address = item.address
        self.step_state = {s: "todo" for s in STEPS}
        self._set_step("connect", "todo")
        self._retry = None
        self._panel.retry_button.setEnabled(False)
        self._panel.pop_edit.clear()
        self._panel.thing_edit.setText(thing_name(item.address, item.name.lower()))  # as the station names it
        mac = factory_pop(item.address)
        self._panel.factory_pop_button.setVisible(mac is not None)
        self._panel.factory_pop_button.setToolTip(f"A board flashed without identity uses its MAC as PoP: {mac}"
                                           if mac else "")
        for bar in self._panel.bars.values():
            bar.setValue(0)
        self._show_endpoint_hint()
        self._say("")

    def open_batch(self) -> QWidget:
        """The batch window (many boards from a sheet)."""
        from fleetdesk_gui.widgets.ble_batch import BleBatchDialog

        if getattr(self, "batch", None) is None:
            self.batch = BleBatchDialog(self.ctx, self)
        self.batch.show()
        return self.batch

    def use_factory_pop(self) -> None:
        """Fill the PoP of a board flashed without identity (its base MAC) and say what that means."""
        item = self.selected()
        mac = factory_pop(item.address) if item is not None else None
        if mac is None:
            return
        self._panel.pop_edit.setText(mac)
        self._say(f"PoP set to the board's MAC {mac}: a board flashed without identity uses it (anyone nearby can "
                  "read it: turn Identity on at the station to give each board its own PoP).")

    def radio_text(self) -> str:
        """Which Bluetooth the scan uses, as Settings names it."""
        from fleetdesk.ble.backends import backend_kind

        kind = backend_kind(profile=self.ctx.profile)
        return "virtual boards" if kind == "virtual" else "this computer's Bluetooth radio"

    def _show_radio(self, *_args: Any) -> None:
        if self.scan_button.isEnabled() and not self.found:
            self.scan_status.setStyleSheet("")
            self.scan_status.setText(f"Press Scan to find boards in Config mode (Bluetooth: {self.radio_text()}, "
                                     "set in Settings)")

    def _show_endpoint_hint(self) -> None:
        self._panel.endpoint_label.setText(f"from profile {self.ctx.profile.name}, filled in when you send")
        self._panel.endpoint_label.setStyleSheet("color: #52606d;")

    def _mark_row(self, address: str, state: str, tip: str = "") -> None:
        for r in range(self.table.rowCount()):
            if cell_text(self.table, r, 1) == address:
                item = QTableWidgetItem(state)
                item.setToolTip(tip)
                item.setForeground(QColor("#1b7f3b"))
                self.table.setItem(r, 3, item)

    def selected(self) -> Any:
        """The board chosen in the list (None if none)."""
        rows = self.table.selectionModel().selectedRows()
        return self.found.get(cell_text(self.table, rows[0].row(), 1)) if rows else None

    # ---- steps ---------------------------------------------------------------------------------
    def connect_board(self) -> None:
        """Connect + PoP handshake, then fill the network list from the board's Wi-Fi scan."""
        from fleetdesk.ble.backends import ble_backends
        from fleetdesk.ble.client import ProvisioningClient

        item = self.selected()
        if item is None:
            self._say("Select a board in the list first.", error=True)
            return
        if not self._panel.pop_edit.text():
            self._say("Enter the board's proof-of-possession (PoP).", error=True)
            return
        _, client_backend = ble_backends(profile=self.ctx.profile)
        self.prov = ProvisioningClient(item.device, self._panel.pop_edit.text(), backend=client_backend,
                                       progress=lambda f, n, t: bridge.post(self._progress, f, n, t))
        self._set_step("connect", "busy")
        self._say(f"Connecting to {item.name}…")

        async def run() -> list[dict[str, Any]]:
            await self.prov.connect()
            return await self.prov.wifi_scan()

        bridge.submit(run(), self._connected)

    def _connected(self, nets: Any, error: BaseException | None) -> None:
        if error is not None:
            self.prov = None
            self._fail("connect", error, self.connect_board)
            return
        self._set_step("connect", "done")
        self._panel.ssid_combo.clear()
        for n in nets:
            self._panel.ssid_combo.addItem(f"{n['ssid']}", n["ssid"])
        self._say(f"Connected. The board sees {len(nets)} network(s).")

    def send_wifi(self) -> None:
        """Send the Wi-Fi credentials; the board tries them and reports the outcome."""
        if self.prov is None:
            self._say("Connect to a board first.", error=True)
            return
        ssid = self._panel.ssid_combo.currentData() or self._panel.ssid_combo.currentText()
        self._set_step("wifi", "busy")
        bridge.submit(self.prov.set_wifi(ssid, self._panel.wifi_pass.text()), self._wifi_done)

    def _wifi_done(self, result: Any, error: BaseException | None) -> None:
        if error is None and not result.get("connected"):
            from fleetdesk.errors import BleError

            error = BleError(f"the board could not join the network: {result.get('reason')}",
                             "Check the network name and password and send them again.")
        if error is not None:
            self._fail("wifi", error, self.send_wifi)
            return
        self._set_step("wifi", "done")
        self._say("Wi-Fi accepted: the board joined the network.")

    def send_cloud_and_commit(self) -> None:
        """Make the thing + certificate (profile), send cloud config and files, commit, wait online."""
        from fleetdesk.ble.provision import cloud_target

        if self.prov is None or self.step_state["wifi"] != "done":
            self._say("Connect and send Wi-Fi first.", error=True)
            return
        self.thing = self._panel.thing_edit.text().strip()
        if not self.thing:
            self._say("Enter a thing name.", error=True)
            return
        self._set_step("cloud", "busy")
        self._say(f"Preparing {self.thing} and its certificate in profile {self.ctx.profile.name}…")
        bridge.submit(self._make_target(cloud_target), self._target_ready)

    async def _make_target(self, cloud_target: Callable) -> Any:
        import asyncio

        return await asyncio.to_thread(cloud_target, self.ctx.profile, self.thing,
                                       create=self._panel.create_check.isChecked())

    def _target_ready(self, target: Any, error: BaseException | None) -> None:
        if error is not None:
            self._fail("cloud", error, self.send_cloud_and_commit)
            return
        self.target = target
        self._panel.endpoint_label.setText(f"{target.endpoint}:{target.port}")
        self._panel.endpoint_label.setStyleSheet("")
        self._send_files()

    def _send_files(self) -> None:
        """Cloud settings, the three files and the commit: provision()'s own sequence on the
        session Connect opened (the board joined Wi-Fi in its own step)."""
        from fleetdesk.ble.provision import provision

        after = {"ca": "cloud", "commit": "certificates"}  # a step begins: the one before it is done

        def on_step(step: str, _detail: str) -> None:
            if step in ("connect", "wifi"):  # this page ran those as its own steps: done already
                return
            shown = "certificates" if step in ("ca", "cert", "key") else step
            if step in after:
                bridge.post(self._set_step, after[step], "done")
            bridge.post(self._set_step, shown, "busy")

        ssid = self._panel.ssid_combo.currentData() or self._panel.ssid_combo.currentText()
        bridge.submit(provision(self.prov.device, self._panel.pop_edit.text(), ssid, self._panel.wifi_pass.text(), self.target,
                                client=self.prov, wifi_joined=True, on_step=on_step), self._committed)

    def _progress(self, name: str, done: int, total: int) -> None:
        if name in self._panel.bars:
            self._panel.bars[name].setValue(int(100 * done / max(total, 1)))

    def _committed(self, result: Any, error: BaseException | None) -> None:
        if error is not None:
            step = next((s for s in ("cloud", "certificates", "commit") if self.step_state[s] == "busy"), "commit")
            self._fail(step, error, self._send_files)
            return
        self._set_step("commit", "done")
        self._set_step("online", "busy")
        self._say(f"Committed. Waiting for {self.thing} to come online…")
        bridge.submit(self.prov.close())
        from fleetdesk.ble.provision import wait_online

        bridge.run_blocking(wait_online, self.ctx.profile, self.thing, on_done=self._online)

    def _online(self, reported: Any, error: BaseException | None) -> None:
        if error is not None:
            self._fail("online", error, lambda: self._committed({}, None))
            return
        self._set_step("online", "done")
        fw = reported.get("firmware_version", "?")
        self._mark_row(self._address, "✓ set up", f"online as {self.thing}")
        self._say(f"{self.thing} is online (firmware {fw}). Field setup complete. "
                  "Pick the next board in the list to set it up.")

    def closeEvent(self, event: Any) -> None:  # noqa: N802 - Qt name
        if self.prov is not None:
            bridge.submit(self.prov.close())
        super().closeEvent(event)


def create_page(ctx: AppContext) -> QWidget:
    """Page factory for the main window registry."""
    return BleSetupPage(ctx)
