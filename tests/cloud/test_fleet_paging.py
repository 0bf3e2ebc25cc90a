"""The Fleet page's place in the index's pages, its rows and its header texts (Qt-free)."""

from __future__ import annotations

import json

from fleetdesk.cloud.fleet_index import FleetRow, Page, Tiles
from fleetdesk.cloud.fleet_paging import FleetPaging, fleet_from_page, summary_text, tiles_text
from fleetdesk.cloud.fleet_state import FleetState


def _page(query: str, number: int, names: list[str], token: str | None) -> Page:
    return Page(query, [FleetRow(name=n, connected=False, since_ms=1_000) for n in names], token, number)


def test_pages_forward_and_back_reuse_the_tokens_and_a_new_query_starts_at_page_one():
    paging = FleetPaging(page_size=2)
    first = paging.request("*", 1)
    assert (first.number, first.token, first.new_query) == (1, None, True)
    paging.loaded(_page("*", 1, ["a", "b"], "t2"))
    assert paging.label() == "Page 1 · things 1–2" and paging.has_next and not paging.has_previous
    second = paging.request("*", 2)
    assert (second.number, second.token, second.new_query) == (2, "t2", False)
    paging.loaded(_page("*", 2, ["c"], None))
    assert paging.label() == "Page 2 · things 3–3" and paging.has_previous and not paging.has_next
    assert paging.request("*", 5).number == 2  # no page past the last one seen
    back = paging.request("*", 1)
    assert back.token is None and back.new_query  # page 1 again: the tiles are re-read too
    paging.loaded(_page("*", 1, ["a", "b"], "t2"))
    other = paging.request("thingName:c*", 2)
    assert (other.number, other.token, other.new_query) == (1, None, True)


def test_an_answer_to_a_replaced_request_is_not_current():
    paging = FleetPaging()
    old = paging.request("a*")
    new = paging.request("b*")
    assert not paging.current(old.serial) and paging.current(new.serial)
    paging.reset()
    assert not paging.current(new.serial) and paging.page is None and paging.label() == ""


def test_rows_take_newer_presence_and_readings_the_session_saw():
    live = FleetState()
    live.apply_connectivity("a", True, 5.0)  # after the index's timestamp (1 s)
    live.apply_connectivity("b", True, 0.5)  # older than the index's: ignored
    live.apply_telemetry("dt/a/env", json.dumps({"temperature": 30.5, "humidity": 41, "seq": 1, "ts": 6}))
    fleet = fleet_from_page(_page("*", 1, ["a", "b"], None), live)
    assert fleet.things["a"].online is True and fleet.things["a"].temperature == 30.5
    assert fleet.things["b"].online is False
    assert fleet.take_changes() == set()  # a fresh page: nothing pending for the table's refresh


def test_header_texts():
    assert summary_text(None) == "Loading from the fleet index…"
    tiles = Tiles(total=130, online=12, firmware=[("1.2.0", 86), ("", 44)], temp_min=15, temp_max=34, temp_avg=24.5)
    assert summary_text(tiles) == "130 things · 12 online · 118 offline"
    assert tiles_text(tiles) == "firmware 1.2.0 ×86, ? ×44 · temperature 15.0–34.0 °C (mean 24.5)"
    assert tiles_text(Tiles(total=3)) == "no shadow readings indexed yet"
