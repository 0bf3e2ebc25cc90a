"""The app's fleet-index client (fleetdesk.cloud.fleet_index) against the sandbox's index."""

from __future__ import annotations

import json

import pytest

from fleetdesk.cloud.fleet_index import FleetIndex, IndexMissing, InvalidQuery, filter_query


@pytest.fixture(scope="module")
def fleet(iot, data):
    from fleetdesk.cloud import account_setup

    with pytest.raises(IndexMissing) as missing:
        FleetIndex(iot).page("*")
    assert "fleetdesk cloud setup" in missing.value.advice
    iot.update_indexing_configuration(thingIndexingConfiguration=account_setup.INDEXING)
    iot.create_thing_group(thingGroupName="line-2")
    for i in range(130):
        iot.create_thing(thingName=f"esp-{i:03d}")
        data.update_thing_shadow(thingName=f"esp-{i:03d}", payload=json.dumps({"state": {"reported": {
            "temperature": 15 + i % 20, "humidity": 40, "firmware_version": "1.2.0" if i % 3 else "1.1.0"}}}))
    for i in range(5):
        iot.add_thing_to_thing_group(thingGroupName="line-2", thingName=f"esp-{i:03d}")
    from helpers_sandbox import poll

    poll(lambda: iot.get_statistics(queryString="shadow.reported.temperature:*")["statistics"]["count"] == 130,
         timeout=10)
    return 130


@pytest.mark.parametrize("text, group, query", [
    ("", "", "*"),
    ("esp-01", "", r"(thingName:esp\-01* OR shadow.reported.firmware_version:esp\-01* OR thingGroupNames:esp\-01*)"),
    ("", "line-2", r"thingGroupNames:line\-2"),
    ("shadow.reported.temperature:[30 TO *]", "g", r"(shadow.reported.temperature:[30 TO *]) AND thingGroupNames:g"),
])
def test_filter_box_and_group_become_one_query(text, group, query):
    assert filter_query(text, group) == query


def test_pages_of_at_most_100_filtered_on_the_server(iot, fleet):
    idx = FleetIndex(iot)
    first = idx.page(filter_query("esp"))
    assert len(first.rows) == 100 and first.next_token and first.rows[0].name == "esp-000"
    second = idx.page(first.query, first.next_token, 2)
    assert len(second.rows) == 30 and second.next_token is None
    row = first.rows[1]
    assert (row.firmware, row.temperature, row.connected) == ("1.2.0", 16.0, False)
    assert [r.name for r in idx.page(filter_query("", "line-2")).rows] == [f"esp-{i:03d}" for i in range(5)]
    assert [r.name for r in idx.page(filter_query("1.1.0 esp-00")).rows] == ["esp-000", "esp-003", "esp-006", "esp-009"]
    assert idx.calls == 4  # one SearchIndex per page, nothing per thing


def test_tiles_come_from_aggregations(iot, fleet):
    t = FleetIndex(iot).tiles(filter_query("esp"))
    assert (t.total, t.online) == (130, 0)
    assert dict(t.firmware) == {"1.2.0": 86, "1.1.0": 44}
    assert (t.temp_min, t.temp_max) == (15, 34)


def test_a_bad_query_says_why(iot, fleet):
    with pytest.raises(InvalidQuery) as bad:
        FleetIndex(iot).page(filter_query("thingName:(esp"))
    assert "refused the query" in str(bad.value) and "AWS query syntax" in bad.value.advice
