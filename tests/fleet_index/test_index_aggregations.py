"""Aggregations over a filter read the matches, not the fleet — and never an outdated set of matches."""

from __future__ import annotations

from fleetdesk.sandbox.index_store import IndexStore


def _put(store: IndexStore, i: int, fw: str, temp: float, site: str) -> None:
    name = f"esp-{i:04d}"
    store.put({"thingName": name}, [("thingName", name), ("shadow.reported.firmware_version", fw),
                                    ("shadow.reported.temperature", temp), ("attributes.site", site)])


def _fleet(tmp_path, n: int = 200) -> IndexStore:
    store = IndexStore(tmp_path / "fleet_index.sqlite")
    for i in range(n):
        _put(store, i, ("1.0.0", "1.1.0")[i % 2], 10 + i % 20, f"site-{i % 10}")
    return store


def test_narrow_and_wide_filters_aggregate_exactly_their_matches(tmp_path):
    store = _fleet(tmp_path)
    narrow = "attributes.site:site-3"          # 20 of 200: the per-match path
    wide = "NOT attributes.site:site-3"        # 180 of 200: the scan path
    assert store.count(narrow) == 20 and store.count(wide) == 180
    assert store.buckets(narrow, "shadow.reported.firmware_version", 5) == [{"keyValue": "1.1.0", "count": 20}]
    assert store.buckets(wide, "shadow.reported.firmware_version", 5) == [
        {"keyValue": "1.0.0", "count": 100}, {"keyValue": "1.1.0", "count": 80}]
    st = store.numeric_stats(narrow, "shadow.reported.temperature")
    assert (st["count"], st["minimum"], st["maximum"]) == (20, 13.0, 23.0)
    assert store.numeric_stats(wide, "shadow.reported.temperature")["count"] == 180
    assert store.cardinality(narrow, "attributes.site") == 1


def test_an_update_between_two_aggregations_of_one_filter_is_counted(tmp_path):
    store = _fleet(tmp_path)
    q = "attributes.site:site-3"
    assert store.buckets(q, "shadow.reported.firmware_version", 5) == [{"keyValue": "1.1.0", "count": 20}]
    _put(store, 3, "2.0.0", 99, "site-3")      # one match reports new firmware
    _put(store, 13, "1.1.0", 11, "site-4")     # one leaves the filter
    assert store.count(q) == 19
    assert store.buckets(q, "shadow.reported.firmware_version", 5) == [
        {"keyValue": "1.1.0", "count": 18}, {"keyValue": "2.0.0", "count": 1}]
    assert store.numeric_stats(q, "shadow.reported.temperature")["maximum"] == 99
    store.delete("esp-0023")
    assert store.count(q) == 18


def test_a_rebuild_replaces_every_document_and_later_updates_still_apply(tmp_path):
    store = _fleet(tmp_path)
    assert store.count("attributes.site:site-3") == 20
    n = store.replace_all(({"thingName": f"new-{i}"}, [("thingName", f"new-{i}"), ("attributes.site", "hall")])
                          for i in range(5))
    assert n == 5 and store.count("*") == 5 and store.count("attributes.site:site-3") == 0
    assert store.buckets("thingName:new*", "attributes.site", 5) == [{"keyValue": "hall", "count": 5}]
    _put(store, 7, "1.0.0", 20, "hall")
    assert store.count("attributes.site:hall") == 6
    names = {r[1] for r in store.db.execute("SELECT * FROM sqlite_master WHERE type='index' AND tbl_name='fields'")}
    assert names == {"fields_value_thing", "fields_num_thing", "fields_thing_field", "fields_lv_thing"}
