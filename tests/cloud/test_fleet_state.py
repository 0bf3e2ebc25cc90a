"""Fleet model: events applied, change sets for the GUI tick, malformed payloads counted."""

from __future__ import annotations

import json

from fleetdesk.cloud.fleet_state import FleetState


def presence(event, client, ts_ms, reason=None):
    doc = {"clientId": client, "timestamp": ts_ms, "eventType": event, "sessionIdentifier": "s",
           "principalIdentifier": "p", "versionNumber": 1}
    if reason:
        doc["disconnectReason"] = reason
    return f"$aws/events/presence/{event}/{client}", json.dumps(doc).encode()


def test_events_update_rows_and_change_sets():
    fleet = FleetState()
    fleet.apply_registry([{"thingName": "t1", "attributes": {"room": "lab"}}, {"thingName": "t2"}])
    assert fleet.take_changes() == {"t1", "t2"}
    assert fleet.take_changes() == set()
    fleet.apply_presence(*presence("connected", "t1", 1_000_000))
    fleet.apply_telemetry("dt/t1/env", b'{"temperature": 22.5, "humidity": 41, "seq": 1}', received=1001.0)
    fleet.apply_shadow("t1", {"state": {"reported": {"firmware_version": "1.2.0", "on": True}}, "version": 7})
    assert fleet.take_changes() == {"t1"}
    row = fleet.things["t1"].row()
    assert row["online"] is True and row["temperature"] == 22.5 and row["firmware"] == "1.2.0"
    assert row["shadow_version"] == 7 and row["attributes"] == {"room": "lab"}
    # disconnect, then a late (older) connected event must not flip it back
    fleet.apply_presence(*presence("disconnected", "t1", 2_000_000, "MQTT_KEEP_ALIVE_TIMEOUT"))
    fleet.apply_presence(*presence("connected", "t1", 1_500_000))
    t1 = fleet.things["t1"]
    assert t1.online is False and t1.disconnect_reason == "MQTT_KEEP_ALIVE_TIMEOUT"
    assert fleet.summary()["offline"] == 1
    # an older shadow version is ignored
    fleet.apply_shadow("t1", {"state": {"reported": {"firmware_version": "1.0.0"}}, "version": 3})
    assert t1.firmware == "1.2.0"
    assert [r["name"] for r in fleet.rows("lab")] == ["t1"]


def test_sequence_gaps_counted():
    fleet = FleetState()
    for seq in (1, 2, 5, 6):
        fleet.apply_telemetry("dt/t/env", json.dumps({"temperature": 20, "seq": seq}).encode())
    assert fleet.things["t"].missing == 2
    assert fleet.summary()["missing"] == 2


def test_malformed_payloads_are_counted_never_raised():
    fleet = FleetState()
    fleet.apply_telemetry("dt/t/env", b"\xff\xfe garbage")
    fleet.apply_telemetry("dt/t/env", b'{"temperature": "warm"}')
    fleet.apply_telemetry("dt//env", b'{"temperature": 1}')
    fleet.apply_presence("$aws/events/presence/connected/t", b"{")
    fleet.apply_presence("$aws/events/presence/connected/t", b'{"eventType": "exploded", "timestamp": 1}')
    fleet.apply_shadow("t", b'{"state": 5}')
    fleet.apply_shadow("t", b'{"state": {}, "version": "x"}')
    fleet.apply_registry([{"nope": 1}])
    d = fleet.diagnostics
    assert d["malformed_telemetry"] == 2 and d["malformed_topic"] == 1
    assert d["malformed_presence"] == 2 and d["malformed_shadow"] == 2 and d["malformed_registry"] == 1
    assert fleet.summary()["malformed"] == 8
    assert len(fleet.problems) == 8 and fleet.problems[0]["thing"] == "t"
    assert "t" not in fleet.things or fleet.things["t"].temperature is None


def test_editor_json_is_checked_before_sending():
    import pytest

    from fleetdesk.cloud.errors import ShadowRejected
    from fleetdesk.cloud.shadows import leaf_diff, parse_state_json

    assert parse_state_json('{"on": true, "refresh": 5000}') == {"on": True, "refresh": 5000}
    assert parse_state_json("null") is None
    with pytest.raises(ShadowRejected) as bad:
        parse_state_json('{\n  "on": tru\n}')
    assert bad.value.error["line"] == 2 and "line 2, column" in str(bad.value)
    with pytest.raises(ShadowRejected, match="JSON object"):
        parse_state_json("[1, 2]")
    with pytest.raises(ShadowRejected, match="deeper than 6"):
        parse_state_json('{"a":{"b":{"c":{"d":{"e":{"f":{"g":1}}}}}}}')
    with pytest.raises(ShadowRejected, match="8 KB") as big:
        parse_state_json('{"blob": "%s"}' % ("x" * 9000))
    assert big.value.code == 413
    assert leaf_diff({"desired": {"on": True, "r": 1}}, {"desired": {"on": False, "r": 1, "n": 2}}) == [
        "desired.n", "desired.on"]
