"""Fleet page: the things of the profile in one sortable, filterable table with bulk actions.

When the account has a fleet index (``fleetdesk cloud setup``), the table holds one
``SearchIndex`` page (100 things) at a time, filtered on the server by the filter box and the
group selector (:mod:`fleetdesk.cloud.fleet_index`); the header tiles come from aggregations;
page and tiles refresh on a timer and after presence changes, so the page costs the same for
100 things and for 100,000. Without an index the page shows the session's own list and says
how to set the index up. Rows update in batches from fleetdesk_gui.live.LiveFleet (2 Hz), never per
message. Double-click a row to open the Device page for it.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer
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
from fleetdesk_gui.widgets.diagnostics import DiagnosticsDialog

ALL_GROUPS = "All groups"
APPLY_BUDGET_S = 0.008  # table updates run in slices this long, so painting and input go on
INDEX_REFRESH_MS = 15_000  # page + tiles re-read from the index (a few calls, whatever the fleet size)
FILTER_DEBOUNCE_MS = 300   # typing in the filter box sends one query, not one per key
TILES_AFTER_PRESENCE_MS = 2_000


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

        self._index = None          # FleetIndex when the account has one
        self._index_fleet = None    # FleetState of the shown page
        self._page = None
        self._tokens: list = [None]  # _tokens[i] = nextToken that loads page i + 1
        self._serial = 0
        self._tiles_data = None
        self._query_timer = QTimer(self)
        self._query_timer.setSingleShot(True)
        self._query_timer.setInterval(FILTER_DEBOUNCE_MS)
        self._query_timer.timeout.connect(lambda: self.load_page(1))
        self._refresh_timer = QTimer(self)
        self._refresh_timer.setInterval(INDEX_REFRESH_MS)
        self._refresh_timer.timeout.connect(self.refresh_index)
        self._tiles_timer = QTimer(self)
        self._tiles_timer.setSingleShot(True)
        self._tiles_timer.setInterval(TILES_AFTER_PRESENCE_MS)
        self._tiles_timer.timeout.connect(self.load_tiles)
        self.prev_button.clicked.connect(lambda: self.load_page(max(1, self._page.number - 1) if self._page else 1))
        self.next_button.clicked.connect(lambda: self.load_page(self._page.number + 1 if self._page else 1))

        self.filter_edit.textChanged.connect(self._filter_changed)
        self.group_combo.currentIndexChanged.connect(self._group_changed)
        self.proxy.rowsInserted.connect(lambda *_a: self._update_summary())
        self.proxy.rowsRemoved.connect(lambda *_a: self._update_summary())
        self.proxy.modelReset.connect(self._update_summary)
        self.table.doubleClicked.connect(self._open_device)
        self.table.selectionModel().selectionChanged.connect(self._selection_changed)
        self.set_desired_button.clicked.connect(self.ask_set_desired)
        self.reboot_button.clicked.connect(self.reboot_selected)
        self.job_button.clicked.connect(lambda: self.with_targets(self._start_job))
        self.all_check.toggled.connect(self._selection_changed)
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
        self._leave_index_mode()
        self.model.set_fleet(session.fleet if session is not None else None)
        if session is not None:
            self._probe_index(session)
        self._update_groups()
        self._update_summary()
        self._selection_changed()

    def _changed(self, names) -> None:
        if self._index is not None:
            self._merge_live(names)
            return
        self.model.apply_changes(names, budget_s=APPLY_BUDGET_S)
        self._fetch_missing_shadows(names)
        self._update_groups()
        self._update_summary()

    def _filter_changed(self, text: str) -> None:
        if self._index is not None:
            self._query_timer.start()
            return
        self.proxy.set_text(text)
        self._update_summary()

    def _group_changed(self, _index: int) -> None:
        if self._index is not None:
            self.load_page(1)
            return
        self.proxy.set_group(self.group_combo.currentData())
        self._update_summary()

    # -- fleet index mode ---------------------------------------------------------------
    @property
    def index_mode(self) -> bool:
        """True while the table shows fleet-index pages."""
        return self._index is not None

    def _probe_index(self, session) -> None:
        """Use the account's fleet index if it has one (else keep the session's list)."""
        from fleetdesk.cloud.fleet_index import FleetIndex

        iot = getattr(getattr(session, "control", None), "iot", None)
        if iot is None:
            return
        index = FleetIndex(iot, on_throttled=lambda delay: bridge.post(self._throttled, delay))

        def done(available, error) -> None:
            if session is not self.ctx.live.session:
                return
            if error is None and available:
                self._enter_index_mode(index)
            elif error is None:
                self.show_message("This account has no fleet index: the table lists what the app loaded itself. "
                                  "For large fleets run `fleetdesk cloud setup` (or Settings > Set up this account).",
                                  ok=True)
        bridge.run_blocking(index.available, on_done=done)

    def _enter_index_mode(self, index) -> None:
        self._index = index
        self.proxy.set_text("")
        self.proxy.set_group("")
        for w in (self.prev_button, self.next_button, self.page_label, self.tiles, self.all_check):
            w.setVisible(True)
        self.refresh_button.setText("Refresh")
        self.filter_edit.setPlaceholderText("Filter: thing, firmware, group — or a fleet index query, "
                                            "e.g. shadow.reported.temperature:[30 TO *]")
        bridge.run_blocking(index.groups, on_done=lambda groups, e: self._set_groups(groups) if e is None else None)
        self.load_page(1)
        self._refresh_timer.start()

    def _leave_index_mode(self) -> None:
        self._index = None
        self._index_fleet = None
        self._page = None
        self._tokens = [None]
        self._tiles_data = None
        self._serial += 1
        for t in (self._refresh_timer, self._query_timer, self._tiles_timer):
            t.stop()
        for w in (self.prev_button, self.next_button, self.page_label, self.tiles, self.all_check):
            w.setVisible(False)
        self.all_check.setChecked(False)
        self.refresh_button.setText("Reload registry")
        self._set_filter_error("")

    def current_query(self) -> str:
        from fleetdesk.cloud.fleet_index import filter_query

        return filter_query(self.filter_edit.text(), self.group_combo.currentData() or "")

    def load_page(self, number: int = 1) -> None:
        """Load page ``number`` of the current query (1 = first; later pages follow nextToken)."""
        index = self._index
        if index is None:
            return
        query = self.current_query()
        if number == 1 or (self._page is not None and self._page.query != query):
            number, self._tokens = 1, [None]
            self.load_tiles()
        number = min(number, len(self._tokens))
        token = self._tokens[number - 1]
        self._serial += 1
        serial = self._serial

        def done(page, error) -> None:
            if serial == self._serial and index is self._index:
                self._page_loaded(page, error)
        bridge.run_blocking(index.page, query, token, number, on_done=done)

    def refresh_index(self) -> None:
        """Re-read the shown page and the tiles (timer; the Refresh button)."""
        if self._index is not None:
            self.load_page(self._page.number if self._page else 1)
            if self._page is not None and self._page.number != 1:
                self.load_tiles()

    def _page_loaded(self, page, error) -> None:
        from fleetdesk.cloud.fleet_index import IndexMissing, InvalidQuery
        from fleetdesk.cloud.fleet_state import FleetState

        if isinstance(error, InvalidQuery):
            self._set_filter_error(error_text(error))
            return
        if isinstance(error, IndexMissing):
            session = self.ctx.live.session
            self._leave_index_mode()
            self.model.set_fleet(session.fleet if session is not None else None)
            self.show_message(error_text(error), ok=False)
            self._update_summary()
            return
        if error is not None:
            self.show_message(f"fleet index: {error_text(error)}", ok=False)
            return
        self._set_filter_error("")
        if self.message.text().startswith("AWS is throttling"):
            self.show_message("")
        fleet = FleetState()
        for row in page.rows:
            t = fleet.thing(row.name)
            t.online = row.connected
            t.disconnect_reason = row.disconnect_reason
            t.presence_ts = (row.since_ms or 0) / 1000.0
            t.firmware = row.firmware or None
            t.temperature, t.humidity = row.temperature, row.humidity
            t.groups, t.attributes, t.shadow_version = row.groups, row.attributes, row.shadow_version
            self._overlay_live(t)
        fleet.take_changes()
        self._index_fleet, self._page = fleet, page
        del self._tokens[page.number:]
        self._tokens.append(page.next_token)
        self.model.set_fleet(fleet)
        self._update_summary()
        self._selection_changed()

    def _overlay_live(self, t) -> bool:
        """Newer values the session saw (presence, the open device) over the index's; True if any changed."""
        session = self.ctx.live.session
        live = session.fleet.things.get(t.name) if session is not None else None
        if live is None:
            return False
        changed = False
        if live.online is not None and live.presence_ts >= t.presence_ts and live.online != t.online:
            t.online, t.presence_ts, t.disconnect_reason = live.online, live.presence_ts, live.disconnect_reason
            changed = True
        if live.temperature is not None and live.sample_ts and live.temperature != t.temperature:
            t.temperature, t.humidity, t.sample_ts = live.temperature, live.humidity, live.sample_ts
            changed = True
        return changed

    def _merge_live(self, names) -> None:
        fleet = self._index_fleet
        if fleet is None:
            return
        touched = [n for n in names if n in fleet.things and self._overlay_live(fleet.things[n])]
        if touched:
            self.model.apply_changes(touched, budget_s=APPLY_BUDGET_S)
        session = self.ctx.live.session
        if session is not None and any(session.fleet.things.get(n) is not None
                                       and session.fleet.things[n].presence_ts for n in names):
            self._tiles_timer.start()  # presence moved: online count soon, once for a burst

    def load_tiles(self) -> None:
        index = self._index
        if index is None:
            return
        query = self.current_query()

        def done(tiles, error) -> None:
            if index is self._index and error is None and query == self.current_query():
                self._tiles_data = tiles
                self._update_summary()
        bridge.run_blocking(index.tiles, query, on_done=done)

    def _throttled(self, delay: float) -> None:
        self.show_message(f"AWS is throttling the fleet index: retrying in {delay:.1f} s "
                          "(the table keeps the last page meanwhile).", ok=False)

    def _set_filter_error(self, text: str) -> None:
        self.filter_edit.setStyleSheet("border: 1px solid #b3261e;" if text else "")
        self.filter_edit.setToolTip(text)
        if text:
            self.show_message(text, ok=False)
        elif self.message.text().startswith("the index refused"):
            self.show_message("")

    def _set_groups(self, groups: list[str]) -> None:
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

    def _update_index_summary(self) -> None:
        page, tiles = self._page, self._tiles_data
        rows = len(page.rows) if page else 0
        if tiles is None:
            self.summary.setText("Loading from the fleet index…")
        else:
            self.summary.setText(f"{tiles.total} things · {tiles.online} online · {tiles.total - tiles.online} offline")
        if tiles is not None:
            parts = []
            if tiles.firmware:
                parts.append("firmware " + ", ".join(f"{v or '?'} ×{n}" for v, n in tiles.firmware))
            if tiles.temp_min is not None:
                parts.append(f"temperature {tiles.temp_min:.1f}–{tiles.temp_max:.1f} °C (mean {tiles.temp_avg:.1f})")
            self.tiles.setText(" · ".join(parts) or "no shadow readings indexed yet")
        if page is not None:
            first = (page.number - 1) * self._index.page_size + 1
            self.page_label.setText(f"Page {page.number} · things {first}–{first + rows - 1}" if rows else
                                    f"Page {page.number}")
            self.prev_button.setEnabled(page.number > 1)
            self.next_button.setEnabled(bool(page.next_token))
            if rows == 0:
                what = self.filter_edit.text().strip() or self.group_combo.currentData()
                self.empty_label.setText(f"No thing matches “{what}”." if what else "No things in this account yet.")
                self.empty_label.setVisible(True)
            else:
                self.empty_label.setVisible(False)

    def _update_summary(self) -> None:
        if self._index is not None:
            self._update_index_summary()
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
        if self._index is not None:
            return  # the index mode lists every group once (ListThingGroups)
        fleet = self.model.fleet
        groups = sorted({g for t in fleet.things.values() for g in t.groups}) if fleet else []
        have = [self.group_combo.itemData(i) for i in range(1, self.group_combo.count())]
        if groups == have:
            return
        self._set_groups(groups)

    # -- selection and actions ----------------------------------------------------------
    def selected(self) -> list[str]:
        """Names of the selected things (visible rows only)."""
        rows = sorted({i.row() for i in self.table.selectionModel().selectedRows()})
        return self.proxy.names(rows)

    def all_matching(self) -> bool:
        """True when bulk actions act on the whole query (index mode, "All matching" checked)."""
        return self._index is not None and self.all_check.isChecked()

    def with_targets(self, fn) -> None:
        """Call ``fn(names)`` with the bulk action's targets: the selected rows, or with "All matching"
        every thing the query matches (paged from the index in a worker thread)."""
        if not self.all_matching():
            names = self.selected()
            if names:
                fn(names)
            return
        index, query = self._index, self.current_query()
        self.show_message(f"finding every thing that matches {query}…")

        def done(names, error) -> None:
            if error is not None:
                self.show_message(f"fleet index: {error_text(error)}", ok=False)
            elif not names:
                self.show_message("nothing matches the filter", ok=False)
            else:
                fn(names)
        bridge.run_blocking(index.all_names, query, on_done=done)

    def _start_job(self, names: list[str]) -> None:
        session = self.ctx.live.session
        if self._index is not None and session is not None:
            for name in names:  # a session on the index lists no registry: the Jobs form lists these
                session.fleet.thing(name)
        self.ctx.navigate.emit("Jobs", {"things": names})

    def _selection_changed(self, *_args) -> None:
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

    def ask_set_desired(self) -> None:
        self.with_targets(self._ask_set_desired)

    def _ask_set_desired(self, names: list[str]) -> None:
        from fleetdesk_gui.widgets.desired_dialog import DesiredDialog

        dialog = DesiredDialog(len(names), self)  # only values the firmware takes can be confirmed
        if dialog.exec():
            self.set_desired(names, *dialog.result_value())

    def set_desired(self, names: list[str], key: str, value) -> None:
        """Set ``desired.key = value`` on ``names`` (result shown under the table)."""
        session = self.ctx.live.session
        if session is None:
            return
        self.show_message(f"setting desired.{key} on {len(names)} thing(s)…")
        bridge.submit(actions.set_desired(session, names, key, value),
                      lambda r, e: self._done(f"desired.{key}", r, e))

    def reboot_selected(self) -> None:
        if self.ctx.live.session is not None:
            self.with_targets(self._reboot)

    def _reboot(self, names: list[str]) -> None:
        session = self.ctx.live.session
        if session is None:
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
        """Reload things and groups from the control plane (index mode: re-read the page)."""
        session = self.ctx.live.session
        if session is None:
            return
        if self._index is not None:
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
