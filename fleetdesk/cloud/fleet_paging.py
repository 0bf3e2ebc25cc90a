"""Where the Fleet page is in the fleet index, and what it shows of it (Qt-free).

:class:`FleetPaging` keeps the page's paging state over :class:`~fleetdesk.cloud.fleet_index.FleetIndex`
pages: the query, the ``nextToken`` of each page seen (SearchIndex pages forward only, so going
back re-asks with the token kept for that page), and a serial so an answer to a request that a
newer one replaced is dropped. :func:`fleet_from_page` turns one page into the
:class:`~fleetdesk.cloud.fleet_state.FleetState` the table model shows, with newer values the
session saw itself (presence events, the open device's readings) over the index's.
:func:`summary_text`, :func:`tiles_text` and :meth:`FleetPaging.label` are the header and pager texts.
"""

from __future__ import annotations

from dataclasses import dataclass

from fleetdesk.cloud.fleet_index import PAGE_SIZE, Page, Tiles
from fleetdesk.cloud.fleet_state import FleetState, ThingState


@dataclass
class PageRequest:
    """One page to ask the index for (``serial`` identifies the request)."""

    query: str
    number: int
    token: str | None
    serial: int
    new_query: bool  # the query changed (or page 1 was asked): the tiles are out of date too


class FleetPaging:
    """The query shown, the page shown and the tokens that reach the pages before it."""

    def __init__(self, page_size: int = PAGE_SIZE) -> None:
        self.page_size = page_size
        self.page: Page | None = None
        self._tokens: list[str | None] = [None]  # _tokens[i] = nextToken that loads page i + 1
        self.serial = 0

    def request(self, query: str, number: int = 1) -> PageRequest:
        """The request for page ``number`` of ``query`` (a new query starts again at page 1;
        a page past the last one known is the next unseen one)."""
        new = number <= 1 or (self.page is not None and self.page.query != query)
        if new:
            number, self._tokens = 1, [None]
        number = min(number, len(self._tokens))
        self.serial += 1
        return PageRequest(query, number, self._tokens[number - 1], self.serial, new)

    def current(self, serial: int) -> bool:
        """True if ``serial`` is the newest request (its answer is still wanted)."""
        return serial == self.serial

    def loaded(self, page: Page) -> None:
        """The index answered: ``page`` is shown; its nextToken reaches the page after it."""
        self.page = page
        del self._tokens[page.number:]
        if page.next_token:  # the last page has none: no page after it can be asked for (page 1 again)
            self._tokens.append(page.next_token)

    def reset(self) -> None:
        """Forget the page and the tokens; answers still under way are dropped."""
        self.page = None
        self._tokens = [None]
        self.serial += 1

    @property
    def number(self) -> int:
        return self.page.number if self.page else 1

    @property
    def has_previous(self) -> bool:
        return self.page is not None and self.page.number > 1

    @property
    def has_next(self) -> bool:
        return self.page is not None and bool(self.page.next_token)

    def label(self) -> str:
        """"Page 2 · things 101–200" ("Page 3" for an empty page)."""
        if self.page is None:
            return ""
        rows = len(self.page.rows)
        first = (self.page.number - 1) * self.page_size + 1
        return f"Page {self.page.number} · things {first}–{first + rows - 1}" if rows else f"Page {self.page.number}"


def overlay_live(t: ThingState, live: ThingState | None) -> bool:
    """Newer values the session saw (presence, the open device's readings) over the index's
    (``t``, changed in place); True if any changed."""
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


def fleet_from_page(page: Page, live: FleetState | None = None) -> FleetState:
    """The things of one index page as a fleet model (no pending changes), ``live`` over them."""
    fleet = FleetState()
    for row in page.rows:
        t = fleet.thing(row.name)
        t.online = row.connected
        t.disconnect_reason = row.disconnect_reason
        t.presence_ts = (row.since_ms or 0) / 1000.0
        t.firmware = row.firmware or None
        t.temperature, t.humidity = row.temperature, row.humidity
        t.groups, t.attributes, t.shadow_version = row.groups, row.attributes, row.shadow_version
        if live is not None:
            overlay_live(t, live.things.get(row.name))
    fleet.take_changes()
    return fleet


def summary_text(tiles: Tiles | None) -> str:
    """The header's counts: "130 things · 12 online · 118 offline"."""
    if tiles is None:
        return "Loading from the fleet index…"
    return f"{tiles.total} things · {tiles.online} online · {tiles.total - tiles.online} offline"


def tiles_text(tiles: Tiles) -> str:
    """The header tiles: firmware versions and the temperature range of what the query matches."""
    parts = []
    if tiles.firmware:
        parts.append("firmware " + ", ".join(f"{v or '?'} ×{n}" for v, n in tiles.firmware))
    if tiles.temp_min is not None and tiles.temp_max is not None and tiles.temp_avg is not None:
        parts.append(f"temperature {tiles.temp_min:.1f}–{tiles.temp_max:.1f} °C (mean {tiles.temp_avg:.1f})")
    return " · ".join(parts) or "no shadow readings indexed yet"
