"""The Fleet page on the account's fleet index: one ``SearchIndex`` page in the table, header
tiles from aggregations, both re-read on a timer, and presence followed only for the rows in view.

:class:`IndexMode` drives the page's widgets; what it keeps (paging state, rows, texts) is
Qt-free in :mod:`fleetdesk.cloud.fleet_paging`, the calls are :mod:`fleetdesk.cloud.fleet_index`
run in worker threads through the bridge. Connectivity comes from the index
(``connectivity.connected`` in every row and in the online tile); a session on the index has
no fleet-wide presence subscription, and the page asks it to follow the presence events of the
things visible in the table (at most ``presence.FOLLOW_MAX``), so the app's connection carries
the same few messages per second for 100 things and for 100,000.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QEvent, QObject, QTimer

from fleetdesk.cloud.fleet_paging import FleetPaging, fleet_from_page, overlay_live, summary_text, tiles_text
from fleetdesk_gui import bridge
from fleetdesk_gui.widgets.error_text import error_text

if TYPE_CHECKING:
    from fleetdesk_gui.pages.fleet import FleetPage

INDEX_REFRESH_MS = 15_000  # page + tiles re-read from the index (a few calls, whatever the fleet size)
FILTER_DEBOUNCE_MS = 300   # typing in the filter box sends one query, not one per key
TILES_AFTER_PRESENCE_MS = 2_000
FOLLOW_AFTER_SCROLL_MS = 500  # presence filters move with the rows in view once scrolling stops


class IndexMode(QObject):
    """The page's fleet-index mode (``active`` while the account has an index)."""

    def __init__(self, page: FleetPage) -> None:
        super().__init__(page)
        self.page = page
        self.index: Any = None    # FleetIndex when the account has one
        self.fleet: Any = None    # FleetState of the shown page
        self.tiles: Any = None
        self.paging = FleetPaging()
        self.query_timer = self._timer(FILTER_DEBOUNCE_MS, lambda: self.load_page(1), single=True)
        self.refresh_timer = self._timer(INDEX_REFRESH_MS, self.refresh)
        self.tiles_timer = self._timer(TILES_AFTER_PRESENCE_MS, self.load_tiles, single=True)
        self.follow_timer = self._timer(FOLLOW_AFTER_SCROLL_MS, self.follow_visible, single=True)
        page.table.verticalScrollBar().valueChanged.connect(lambda _v: self._rows_in_view_moved())
        page.table.viewport().installEventFilter(self)

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 - Qt's name
        if event.type() == QEvent.Type.Resize:
            self._rows_in_view_moved()  # a taller table shows more rows
        return False

    def _rows_in_view_moved(self) -> None:
        if self.active:
            self.follow_timer.start()

    def _timer(self, ms: int, fn, single: bool = False) -> QTimer:
        t = QTimer(self)
        t.setSingleShot(single)
        t.setInterval(ms)
        t.timeout.connect(fn)
        return t

    @property
    def active(self) -> bool:
        return self.index is not None

    # -- entering and leaving ------------------------------------------------------------
    def probe(self, session) -> None:
        """Use the account's fleet index if it has one (else the page keeps the session's list)."""
        from fleetdesk.cloud.fleet_index import FleetIndex

        iot = getattr(getattr(session, "control", None), "iot", None)
        if iot is None:
            return
        index = FleetIndex(iot, on_throttled=lambda delay: bridge.post(self._throttled, delay))

        def done(available, error) -> None:
            if session is not self.page.ctx.live.session:
                return
            if error is None and available:
                self.enter(index)
            elif error is None:
                self.page.show_message("This account has no fleet index: the table lists what the app loaded itself. "
                                       "For large fleets run `fleetdesk cloud setup` (or Settings > Set up this "
                                       "account).", ok=True)
        bridge.run_blocking(index.available, on_done=done)

    def enter(self, index) -> None:
        self.index = index
        self.page.show_index_widgets(True)
        bridge.run_blocking(index.groups, on_done=lambda groups, e: self.page.set_groups(groups) if e is None else None)
        self.load_page(1)
        self.refresh_timer.start()

    def leave(self) -> None:
        self.index = None
        self.fleet = None
        self.tiles = None
        self.paging.reset()
        for t in (self.refresh_timer, self.query_timer, self.tiles_timer, self.follow_timer):
            t.stop()
        self._follow([])

    # -- loading -------------------------------------------------------------------------
    def load_page(self, number: int = 1) -> None:
        """Load page ``number`` of the page's query (1 = first; later pages follow nextToken)."""
        index = self.index
        if index is None:
            return
        req = self.paging.request(self.page.current_query(), number)
        if req.new_query:
            self.load_tiles()

        def done(page, error) -> None:
            if self.paging.current(req.serial) and index is self.index:
                self._page_loaded(page, error)
        bridge.run_blocking(index.page, req.query, req.token, req.number, on_done=done)

    def refresh(self) -> None:
        """Re-read the shown page and the tiles (timer; the Refresh button)."""
        if self.index is not None:
            self.load_page(self.paging.number)
            if self.paging.number != 1:
                self.load_tiles()

    def load_tiles(self) -> None:
        index = self.index
        if index is None:
            return
        query = self.page.current_query()

        def done(tiles, error) -> None:
            if index is self.index and error is None and query == self.page.current_query():
                self.tiles = tiles
                self.page.update_summary()
        bridge.run_blocking(index.tiles, query, on_done=done)

    def _page_loaded(self, page, error) -> None:
        from fleetdesk.cloud.fleet_index import IndexMissing, InvalidQuery

        if isinstance(error, InvalidQuery):
            self.page.set_filter_error(error_text(error))
            return
        if isinstance(error, IndexMissing):
            self.page.leave_index_mode()
            self.page.show_message(error_text(error), ok=False)
            return
        if error is not None:
            self.page.show_message(f"fleet index: {error_text(error)}", ok=False)
            return
        self.page.set_filter_error("")
        if self.page.message.text().startswith("AWS is throttling"):
            self.page.show_message("")
        session = self.page.ctx.live.session
        self.fleet = fleet_from_page(page, session.fleet if session is not None else None)
        self.paging.loaded(page)
        self.page.model.set_fleet(self.fleet)
        self.page.update_summary()
        self.page.selection_changed()
        self.follow_timer.start()  # the rows in view changed: so do the presence filters

    # -- live values ---------------------------------------------------------------------
    def merge_live(self, names) -> None:
        """The session saw changes (presence of followed things, the open device): show them."""
        fleet = self.fleet
        session = self.page.ctx.live.session
        if fleet is None or session is None:
            return
        touched = [n for n in names if n in fleet.things and overlay_live(fleet.things[n], session.fleet.things.get(n))]
        if touched:
            self.page.model.apply_changes(touched, budget_s=self.page.APPLY_BUDGET_S)
        if any(session.fleet.things.get(n) is not None and session.fleet.things[n].presence_ts for n in names):
            self.tiles_timer.start()  # presence moved: online count soon, once for a burst

    def visible_names(self) -> list[str]:
        """The things in the table's rows that are in view now."""
        table, proxy = self.page.table, self.page.proxy
        if proxy.rowCount() == 0:
            return []
        top = table.rowAt(0)
        bottom = table.rowAt(max(0, table.viewport().height() - 1))
        top = 0 if top < 0 else top
        bottom = proxy.rowCount() - 1 if bottom < 0 else bottom
        return proxy.names(list(range(top, bottom + 1)))

    def follow_visible(self) -> None:
        self._follow(self.visible_names() if self.active else [])

    def _follow(self, names: list[str]) -> None:
        session = self.page.ctx.live.session
        presence = getattr(session, "presence", None)
        if presence is None or not getattr(presence, "scoped", False):
            return  # unscoped sessions hear every device's presence already
        bridge.submit(presence.follow_only(names))

    # -- texts ---------------------------------------------------------------------------
    def _throttled(self, delay: float) -> None:
        self.page.show_message(f"AWS is throttling the fleet index: retrying in {delay:.1f} s "
                               "(the table keeps the last page meanwhile).", ok=False)

    def update_summary(self) -> None:
        page = self.page
        page.summary.setText(summary_text(self.tiles))
        if self.tiles is not None:
            page.tiles.setText(tiles_text(self.tiles))
        if self.paging.page is None:
            return
        page.page_label.setText(self.paging.label())
        page.prev_button.setEnabled(self.paging.has_previous)
        page.next_button.setEnabled(self.paging.has_next)
        if not self.paging.page.rows:
            what = page.filter_edit.text().strip() or page.group_combo.currentData()
            page.empty_label.setText(f"No thing matches “{what}”." if what else "No things in this account yet.")
            page.empty_label.setVisible(True)
        else:
            page.empty_label.setVisible(False)
