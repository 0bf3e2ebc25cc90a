"""Fleet page: every thing of the profile in one sortable, filterable table with bulk actions.

Rows update in batches from gui.live.LiveFleet (2 Hz), never per message. Double-click a row
to open the Device page for it.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QInputDialog,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from gui import actions, bridge
from gui.context import AppContext
from gui.widgets.error_text import error_text
from gui.models.fleet_table import FleetFilterProxy, FleetTableModel
from gui.widgets.diagnostics import DiagnosticsDialog

ALL_GROUPS = "All groups"
APPLY_BUDGET_S = 0.008  # table updates run in slices this long, so painting and input go on


class FleetPage(QWidget):
    """The fleet table, its filters and bulk actions."""

    def __init__(self, ctx: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.setObjectName("FleetPage")
        layout = QVBoxLayout(self)
        top = QHBoxLayout()
        title = QLabel("<h2>Fleet</h2>")
        top.addWidget(title)
        top.addStretch(1)
        self.summary = QLabel("Not connected.")
        self.summary.setObjectName("fleetSummary")
        top.addWidget(self.summary)
        layout.addLayout(top)

        bar = QHBoxLayout()
        self.filter_edit = QLineEdit()
        self.filter_edit.setObjectName("fleetFilter")
        self.filter_edit.setPlaceholderText("Filter: thing, firmware, group, attribute…")
        self.filter_edit.setClearButtonEnabled(True)
        self.group_combo = QComboBox()
        self.group_combo.setObjectName("groupFilter")
        self.group_combo.addItem(ALL_GROUPS, "")
        self.set_desired_button = QPushButton("Set desired…")
        self.reboot_button = QPushButton("Reboot")
        self.job_button = QPushButton("Start job…")
        self.refresh_button = QPushButton("Reload registry")
        self.diag_button = QPushButton("Diagnostics")
        self.diag_button.setObjectName("diagButton")
        bar.addWidget(self.filter_edit, 2)
        bar.addWidget(self.group_combo)
        for b in (self.set_desired_button, self.reboot_button, self.job_button):
            bar.addWidget(b)
        bar.addStretch(1)
        bar.addWidget(self.refresh_button)
        bar.addWidget(self.diag_button)
        layout.addLayout(bar)

        self.model = FleetTableModel(self)
        self.proxy = FleetFilterProxy(self)
        self.proxy.setSourceModel(self.model)
        self.table = QTableView()
        self.table.setObjectName("fleetTable")
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(0, Qt.AscendingOrder)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.ExtendedSelection)
        self.table.setAlternatingRowColors(True)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(22)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.Interactive)
        self.table.horizontalHeader().setStretchLastSection(True)
        for col, width in enumerate((150, 70, 90, 90, 85, 80, 90, 140)):
            self.table.setColumnWidth(col, width)
        self.empty_label = QLabel("")
        self.empty_label.setObjectName("fleetEmpty")
        self.empty_label.setWordWrap(True)
        self.empty_label.setAlignment(Qt.AlignCenter)
        self.empty_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.empty_label.setStyleSheet("color: #52606d; padding: 24px;")
        layout.addWidget(self.empty_label)
        layout.addWidget(self.table, 1)
        self.message = QLabel("")
        self.message.setObjectName("fleetMessage")
        self.message.setWordWrap(True)
        layout.addWidget(self.message)

        self.filter_edit.textChanged.connect(self._filter_changed)
        self.group_combo.currentIndexChanged.connect(self._group_changed)
        self.proxy.rowsInserted.connect(lambda *_a: self._update_summary())
        self.proxy.rowsRemoved.connect(lambda *_a: self._update_summary())
        self.proxy.modelReset.connect(self._update_summary)
        self.table.doubleClicked.connect(self._open_device)
        self.table.selectionModel().selectionChanged.connect(self._selection_changed)
        self.set_desired_button.clicked.connect(self.ask_set_desired)
        self.reboot_button.clicked.connect(self.reboot_selected)
        self.job_button.clicked.connect(lambda: self.ctx.navigate.emit("Jobs", {"things": self.selected()}))
        self.refresh_button.clicked.connect(self.reload_registry)
        self.diag_button.clicked.connect(self.show_diagnostics)
        ctx.live.changed.connect(self._changed)
        ctx.live.session_changed.connect(self._session_changed)
        self._session_changed(ctx.live.session)

    # -- data ---------------------------------------------------------------------------
    def _fetch_missing_shadows(self, names) -> None:
        session = self.ctx.live.session
        if session is None:
            return
        missing = [n for n in names if n not in self._shadow_asked and n in session.fleet.things
                   and session.fleet.things[n].shadow_version is None]
        if missing:
            self._shadow_asked.update(missing)
            bridge.submit(actions.fetch_shadows(session, missing))

    def _session_changed(self, session) -> None:
        self._shadow_asked: set[str] = set()
        self.model.set_fleet(session.fleet if session is not None else None)
        if session is not None:
            self._fetch_missing_shadows(list(session.fleet.things))
        self._update_groups()
        self._update_summary()
        self._selection_changed()

    def _changed(self, names) -> None:
        self.model.apply_changes(names, budget_s=APPLY_BUDGET_S)
        self._fetch_missing_shadows(names)
        self._update_groups()
        self._update_summary()

    def _filter_changed(self, text: str) -> None:
        self.proxy.set_text(text)
        self._update_summary()

    def _group_changed(self, _index: int) -> None:
        self.proxy.set_group(self.group_combo.currentData())
        self._update_summary()

    def _filtering(self) -> bool:
        return bool(self.filter_edit.text().strip() or self.group_combo.currentData())

    def _update_empty(self) -> None:
        """Say why the table is empty (not connected, no things, nothing matches the filter)."""
        fleet = self.model.fleet
        if fleet is None:
            text = ("Not connected. The app connects to the active profile (see the status bar at the "
                    "bottom); choose or fix a profile in Settings.")
        elif not fleet.things:
            text = ("No things in this profile yet. Flash boards on the Stations page, set one up on the "
                    "BLE Setup page, or run simulated devices: fleetdesk fleet simulate --count 10")
        elif self.proxy.rowCount() == 0 and self._filtering():
            what = [f"“{self.filter_edit.text().strip()}”"] if self.filter_edit.text().strip() else []
            if self.group_combo.currentData():
                what.append(f"group {self.group_combo.currentData()}")
            text = f"No thing matches {' in '.join(what)}. Clear the filter to see all {len(fleet.things)}."
        else:
            text = ""
        self.empty_label.setText(text)
        self.empty_label.setVisible(bool(text))

    def _update_summary(self) -> None:
        self._update_empty()
        fleet = self.model.fleet
        if fleet is None:
            self.summary.setText("Not connected.")
            return
        s = fleet.summary()
        text = f"{s['things']} things · {s['online']} online · {s['offline']} offline"
        if self._filtering():
            text = f"{self.proxy.rowCount()} shown · " + text
        if s["malformed"]:
            text += f" · {s['malformed']} malformed payloads"
        if s["missing"]:
            text += f" · {s['missing']} telemetry messages missing"
        self.summary.setText(text)

    def _update_groups(self) -> None:
        fleet = self.model.fleet
        groups = sorted({g for t in fleet.things.values() for g in t.groups}) if fleet else []
        have = [self.group_combo.itemData(i) for i in range(1, self.group_combo.count())]
        if groups == have:
            return
        current = self.group_combo.currentData()
        self.group_combo.blockSignals(True)
        self.group_combo.clear()
        self.group_combo.addItem(ALL_GROUPS, "")
        for g in groups:
            self.group_combo.addItem(g, g)
        self.group_combo.setCurrentIndex(max(0, self.group_combo.findData(current)))
        self.group_combo.blockSignals(False)

    # -- selection and actions ----------------------------------------------------------
    def selected(self) -> list[str]:
        """Names of the selected things (visible rows only)."""
        rows = sorted({i.row() for i in self.table.selectionModel().selectedRows()})
        return self.proxy.names(rows)

    def _selection_changed(self, *_args) -> None:
        n = len(self.selected())
        has_session = self.ctx.live.session is not None
        why = "" if n > 0 and has_session else (
            "select things in the table first (Ctrl/Shift+click for several)" if has_session else "not connected")
        for b in (self.set_desired_button, self.reboot_button, self.job_button):
            b.setEnabled(n > 0 and has_session)
            b.setToolTip(why or f"{n} thing(s) selected")
        self.refresh_button.setEnabled(has_session)

    def _open_device(self, index) -> None:
        name = self.proxy.names([index.row()])[0]
        self.ctx.navigate.emit("Device", name)

    def show_message(self, text: str, ok: bool = True) -> None:
        self.message.setText(text)
        self.message.setStyleSheet("color: #1b7f3b;" if ok else "color: #b3261e;")

    def ask_set_desired(self) -> None:
        names = self.selected()
        if not names:
            return
        key, ok = QInputDialog.getText(self, "Set desired", f"Desired key for {len(names)} thing(s):", text="on")
        if not ok or not key.strip():
            return
        from fleetdesk.cloud.desired import default_text

        text, ok = QInputDialog.getText(self, "Set desired", f"Value for desired.{key.strip()} (JSON):",
                                        text=default_text(key))
        if ok:
            self.set_desired(names, key.strip(), actions.parse_value(text))

    def set_desired(self, names: list[str], key: str, value) -> None:
        """Set ``desired.key = value`` on ``names`` (result shown under the table)."""
        session = self.ctx.live.session
        if session is None:
            return
        self.show_message(f"setting desired.{key} on {len(names)} thing(s)…")
        bridge.submit(actions.set_desired(session, names, key, value),
                      lambda r, e: self._done(f"desired.{key}", r, e))

    def reboot_selected(self) -> None:
        session, names = self.ctx.live.session, self.selected()
        if session is None or not names:
            return
        self.show_message(f"asking {len(names)} thing(s) to reboot…")
        bridge.submit(actions.reboot(session, names), lambda r, e: self._done("reboot", r, e))

    def _done(self, what: str, result, error) -> None:
        if error is not None:
            self.show_message(f"{what}: {error_text(error)}", ok=False)
            return
        ok, failed = result
        self.show_message(actions.summary(what, ok, failed), ok=not failed)

    def reload_registry(self) -> None:
        """Reload things and groups from the control plane."""
        session = self.ctx.live.session
        if session is None:
            return

        async def reload():
            things = await session.control.list_things()
            session.fleet.apply_registry(things)
            await session.refresh_groups()
            return len(things)

        bridge.submit(reload(), lambda n, e: self.show_message(
            f"registry: {n} things" if e is None else f"registry: {error_text(e)}", ok=e is None))

    def show_diagnostics(self) -> DiagnosticsDialog:
        dlg = DiagnosticsDialog(self.model.fleet, self)
        dlg.show()
        return dlg

    def closeEvent(self, event) -> None:  # noqa: N802
        try:
            self.ctx.live.changed.disconnect(self._changed)
            self.ctx.live.session_changed.disconnect(self._session_changed)
        except (RuntimeError, TypeError):
            pass
        super().closeEvent(event)


def create_page(ctx: AppContext) -> QWidget:
    """Page factory for the main window registry."""
    return FleetPage(ctx)
