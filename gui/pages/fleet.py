"""Fleet page: the things of the profile in one sortable, filterable table with bulk actions.

When the account has a fleet index (``fleetdesk cloud setup``), the table holds one
``SearchIndex`` page (100 things) at a time, filtered on the server by the filter box and the
group selector; the header tiles come from aggregations; page and tiles refresh on a timer, and
presence is followed only for the rows in view, so the page costs the same for 100 things and
for 100,000 (:mod:`fleetdesk_gui.pages.fleet_index_mode`, over the Qt-free
:mod:`fleetdesk.cloud.fleet_paging` and :mod:`fleetdesk.cloud.fleet_index`). Without an index
the page shows the session's own list and says how to set the index up. Rows update in batches
from fleetdesk_gui.live.LiveFleet (2 Hz), never per message. Bulk actions
(:mod:`fleetdesk_gui.pages.fleet_bulk`) act on the selected rows or on every thing the query
matches. Double-click a row to open the Device page for it.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from fleetdesk_gui import actions, bridge
from fleetdesk_gui.context import AppContext
from fleetdesk_gui.widgets.error_text import error_text
from fleetdesk_gui.models.fleet_table import FleetFilterProxy, FleetTableModel
from fleetdesk_gui.pages.fleet_bulk import BulkActions
from fleetdesk_gui.pages.fleet_index_mode import IndexMode
from fleetdesk_gui.widgets.diagnostics import DiagnosticsDialog

ALL_GROUPS = "All groups"
APPLY_BUDGET_S = 0.008  # table updates run in slices this long, so painting and input go on


class FleetPage(QWidget):
    """The fleet table, its filters and bulk actions."""

    APPLY_BUDGET_S = APPLY_BUDGET_S

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
        self.tiles = QLabel("")
        self.tiles.setObjectName("fleetTiles")
        self.tiles.setVisible(False)
        layout.addWidget(self.tiles)

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
        self.all_check = QCheckBox("All matching")
        self.all_check.setObjectName("allMatching")
        self.all_check.setToolTip("Set desired, Reboot and Start job act on every thing the filter matches "
                                  "(all pages), not only the selected rows")
        self.all_check.setVisible(False)
        bar.addWidget(self.filter_edit, 2)
        bar.addWidget(self.group_combo)
        bar.addWidget(self.all_check)
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
        self.table.sortByColumn(0, Qt.SortOrder.AscendingOrder)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.setAlternatingRowColors(True)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(22)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.table.horizontalHeader().setStretchLastSection(True)
        for col, width in enumerate((150, 70, 90, 90, 85, 80, 90, 140)):
            self.table.setColumnWidth(col, width)
        self.empty_label = QLabel("")
        self.empty_label.setObjectName("fleetEmpty")
        self.empty_label.setWordWrap(True)
        self.empty_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.empty_label.setStyleSheet("color: #52606d; padding: 24px;")
        layout.addWidget(self.empty_label)
        layout.addWidget(self.table, 1)
        pager = QHBoxLayout()
        self.prev_button = QPushButton("‹ Previous")
        self.next_button = QPushButton("Next ›")
        self.page_label = QLabel("")
        self.page_label.setObjectName("fleetPage")
        pager.addWidget(self.prev_button)
        pager.addWidget(self.page_label)
        pager.addWidget(self.next_button)
        pager.addStretch(1)
        layout.addLayout(pager)
        for w in (self.prev_button, self.next_button, self.page_label):
            w.setVisible(False)
        self.message = QLabel("")
        self.message.setObjectName("fleetMessage")
        self.message.setWordWrap(True)
        layout.addWidget(self.message)

        self.indexed = IndexMode(self)
        self.bulk = BulkActions(self)
        self.prev_button.clicked.connect(lambda: self.load_page(max(1, self.indexed.paging.number - 1)))
        self.next_button.clicked.connect(lambda: self.load_page(self.indexed.paging.number + 1))

        self.filter_edit.textChanged.connect(self._filter_changed)
        self.group_combo.currentIndexChanged.connect(self._group_changed)
        self.proxy.rowsInserted.connect(lambda *_a: self.update_summary())
        self.proxy.rowsRemoved.connect(lambda *_a: self.update_summary())
        self.proxy.modelReset.connect(self.update_summary)
        self.table.doubleClicked.connect(self._open_device)
        self.table.selectionModel().selectionChanged.connect(self.selection_changed)
        self.set_desired_button.clicked.connect(self.ask_set_desired)
        self.reboot_button.clicked.connect(self.reboot_selected)
        self.job_button.clicked.connect(lambda: self.bulk.with_targets(self.bulk.start_job))
        self.all_check.toggled.connect(self.selection_changed)
        self.refresh_button.clicked.connect(self.reload_registry)
        self.diag_button.clicked.connect(self.show_diagnostics)
        ctx.live.changed.connect(self._changed)
        ctx.live.follow_session(self._session_changed)

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
        self._leave_index_mode()
        self.model.set_fleet(session.fleet if session is not None else None)
        if session is not None:
            self.indexed.probe(session)
        self._update_groups()
        self.update_summary()
        self.selection_changed()

    def _changed(self, names) -> None:
        if self.indexed.active:
            self.indexed.merge_live(names)
            return
        self.model.apply_changes(names, budget_s=APPLY_BUDGET_S)
        self._fetch_missing_shadows(names)
        self._update_groups()
        self.update_summary()

    def _filter_changed(self, text: str) -> None:
        if self.indexed.active:
            self.indexed.query_timer.start()
            return
        self.proxy.set_text(text)
        self.update_summary()

    def _group_changed(self, _index: int) -> None:
        if self.indexed.active:
            self.load_page(1)
            return
        self.proxy.set_group(self.group_combo.currentData())
        self.update_summary()

    # -- fleet index mode (fleet_index_mode.IndexMode) ------------------------------------------
    @property
    def index_mode(self) -> bool:
        """True while the table shows fleet-index pages."""
        return self.indexed.active

    def show_index_widgets(self, on: bool) -> None:
        """The pager, tiles and "All matching" show in index mode only; the filter box says what it takes."""
        if on:
            self.proxy.set_text("")
            self.proxy.set_group("")
        for w in (self.prev_button, self.next_button, self.page_label, self.tiles, self.all_check):
            w.setVisible(on)
        if not on:
            self.all_check.setChecked(False)
        self.refresh_button.setText("Refresh" if on else "Reload registry")
        self.filter_edit.setPlaceholderText(
            "Filter: thing, firmware, group — or a fleet index query, e.g. shadow.reported.temperature:[30 TO *]"
            if on else "Filter: thing, firmware, group, attribute…")

    def _leave_index_mode(self) -> None:
        self.indexed.leave()
        self.show_index_widgets(False)
        self.set_filter_error("")

    def leave_index_mode(self) -> None:
        """The index went away: back to the session's own list."""
        session = self.ctx.live.session
        self._leave_index_mode()
        self.model.set_fleet(session.fleet if session is not None else None)
        self.update_summary()

    def current_query(self) -> str:
        from fleetdesk.cloud.fleet_index import filter_query

        return filter_query(self.filter_edit.text(), self.group_combo.currentData() or "")

    def load_page(self, number: int = 1) -> None:
        """Load page ``number`` of the current query (index mode)."""
        self.indexed.load_page(number)

    def refresh_index(self) -> None:
        """Re-read the shown page and the tiles (timer; the Refresh button)."""
        self.indexed.refresh()

    def set_filter_error(self, text: str) -> None:
        self.filter_edit.setStyleSheet("border: 1px solid #b3261e;" if text else "")
        self.filter_edit.setToolTip(text)
        if text:
            self.show_message(text, ok=False)
        elif self.message.text().startswith("the index refused"):
            self.show_message("")

    def set_groups(self, groups: list[str]) -> None:
        current = self.group_combo.currentData()
        self.group_combo.blockSignals(True)
        self.group_combo.clear()
        self.group_combo.addItem(ALL_GROUPS, "")
        for g in groups:
            self.group_combo.addItem(g, g)
        self.group_combo.setCurrentIndex(max(0, self.group_combo.findData(current)))
        self.group_combo.blockSignals(False)

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

    def update_summary(self) -> None:
        if self.indexed.active:
            self.indexed.update_summary()
            return
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
        if self.indexed.active:
            return  # the index mode lists every group once (ListThingGroups)
        fleet = self.model.fleet
        groups: list[str] = sorted({g for t in fleet.things.values() for g in t.groups}) if fleet else []
        have = [self.group_combo.itemData(i) for i in range(1, self.group_combo.count())]
        if groups == have:
            return
        self.set_groups(groups)

    # -- selection and actions ----------------------------------------------------------
    def selected(self) -> list[str]:
        """Names of the selected things (visible rows only)."""
        rows = sorted({i.row() for i in self.table.selectionModel().selectedRows()})
        return self.proxy.names(rows)

    def all_matching(self) -> bool:
        """True when bulk actions act on the whole query (index mode, "All matching" checked)."""
        return self.indexed.active and self.all_check.isChecked()

    def selection_changed(self, *_args) -> None:
        n = len(self.selected())
        if self.all_matching():
            n = max(n, 1)
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

    def with_targets(self, fn) -> None:
        """Call ``fn(names)`` with the bulk action's targets (see :meth:`BulkActions.with_targets`)."""
        self.bulk.with_targets(fn)

    def ask_set_desired(self) -> None:
        self.bulk.with_targets(self.bulk.ask_set_desired)

    def set_desired(self, names: list[str], key: str, value) -> None:
        """Set ``desired.key = value`` on ``names`` (result shown under the table)."""
        self.bulk.set_desired(names, key, value)

    def reboot_selected(self) -> None:
        if self.ctx.live.session is not None:
            self.bulk.with_targets(self.bulk.reboot)

    def reload_registry(self) -> None:
        """Reload things and groups from the control plane (index mode: re-read the page)."""
        session = self.ctx.live.session
        if session is None:
            return
        if self.indexed.active:
            self.refresh_index()
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
        self._leave_index_mode()
        try:
            self.ctx.live.changed.disconnect(self._changed)
            self.ctx.live.session_changed.disconnect(self._session_changed)
        except (RuntimeError, TypeError):
            pass
        super().closeEvent(event)


def create_page(ctx: AppContext) -> QWidget:
    """Page factory for the main window registry."""
    return FleetPage(ctx)
