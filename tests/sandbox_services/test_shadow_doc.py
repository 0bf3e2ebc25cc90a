"""Shadow document semantics (pure engine, no broker)."""

from __future__ import annotations

import json

import pytest

from fleetdesk.sandbox.shadow_doc import (
    Shadow,
    ShadowError,
    apply_delete,
    apply_update,
    compute_delta,
    get_reply,
)


def upd(shadow, doc, ts=100):
    return apply_update(shadow, json.dumps(doc).encode(), ts=ts)


def test_first_update_creates_version_1_with_metadata_and_delta():
    r = upd(Shadow("t1"), {"state": {"desired": {"on": True, "refresh": 5000}}, "clientToken": "c1"})
    assert r.shadow.version == 1 and r.shadow.exists
    assert r.accepted["clientToken"] == "c1"
    assert r.accepted["metadata"]["desired"]["on"] == {"timestamp": 100}
    assert r.delta["state"] == {"on": True, "refresh": 5000}
    assert r.delta["clientToken"] == "c1"
    assert "previous" not in r.documents and r.documents["current"]["version"] == 1


def test_nested_merge_null_deletes_and_arrays_replaced():
    s = upd(Shadow("t"), {"state": {"reported": {"a": {"b": 1, "c": 2}, "arr": [1, 2, 3]}}}).shadow
    s = upd(s, {"state": {"reported": {"a": {"b": None, "d": 4}, "arr": [9]}}}, ts=200).shadow
    assert s.reported == {"a": {"c": 2, "d": 4}, "arr": [9]}
    assert s.metadata["reported"]["a"]["c"] == {"timestamp": 100}
    assert s.metadata["reported"]["a"]["d"] == {"timestamp": 200}
    assert s.metadata["reported"]["arr"] == [{"timestamp": 200}]
    assert s.version == 2


def test_desired_null_clears_section_and_delta_only_differing_leaves():
    s = upd(Shadow("t"), {"state": {"desired": {"x": 1, "y": {"z": 2, "w": 3}}, "reported": {"x": 1, "y": {"z": 0, "w": 3}}}}).shadow
    assert compute_delta(s.desired, s.reported) == {"y": {"z": 2}}
    assert get_reply(s)["state"]["delta"] == {"y": {"z": 2}}
    s = upd(s, {"state": {"desired": None}}).shadow
    assert s.desired == {} and "delta" not in get_reply(s)["state"]


def test_version_conflict_is_409_and_leaves_shadow_unchanged():
    s = upd(Shadow("t"), {"state": {"reported": {"v": 1}}}).shadow
    with pytest.raises(ShadowError) as e:
        upd(s, {"state": {"reported": {"v": 2}}, "version": 7})
    assert e.value.code == 409 and e.value.message == "Version conflict"
    assert s.reported == {"v": 1}
    assert upd(s, {"state": {"reported": {"v": 2}}, "version": 1}).shadow.version == 2


@pytest.mark.parametrize(
    "payload,code",
    [
        (b"{not json", 400),
        (b"[1,2]", 400),
        (json.dumps({"nostate": 1}).encode(), 400),
        (json.dumps({"state": {"delta": {"a": 1}}}).encode(), 400),
        (json.dumps({"state": {"desired": {"a": {"b": {"c": {"d": {"e": {"f": {"g": 1}}}}}}}}}).encode(), 400),
        (json.dumps({"state": {"desired": {"a": 1}}, "clientToken": "x" * 65}).encode(), 400),
        (json.dumps({"state": {"desired": {"big": "x" * 9000}}}).encode(), 413),
    ],
)
def test_bad_requests_rejected_with_aws_codes(payload, code):
    with pytest.raises(ShadowError) as e:
        apply_update(Shadow("t"), payload)
    assert e.value.code == code


def test_depth_six_is_allowed():
    doc = {"state": {"desired": {"a": {"b": {"c": {"d": {"e": {"f": 1}}}}}}}}
    assert upd(Shadow("t"), doc).shadow.version == 1


def test_get_and_delete_of_missing_shadow_is_404_with_aws_message():
    with pytest.raises(ShadowError) as e:
        get_reply(Shadow("thingA"))
    assert e.value.code == 404 and e.value.message == "No shadow exists with name: 'thingA'"
    with pytest.raises(ShadowError):
        apply_delete(Shadow("thingA", "cfg"))


def test_delete_keeps_version_and_next_update_continues():
    s = upd(Shadow("t"), {"state": {"reported": {"a": 1}}}).shadow
    gone, reply = apply_delete(s, {"clientToken": "d"})
    assert reply == {"version": 1, "timestamp": reply["timestamp"], "clientToken": "d"}
    assert not gone.exists
    again = upd(gone, {"state": {"reported": {"b": 2}}}).shadow
    assert again.version == 2 and again.reported == {"b": 2}


def test_reported_only_update_that_does_not_touch_delta_keys_publishes_no_delta():
    s = upd(Shadow("t"), {"state": {"desired": {"on": True}}}).shadow
    r = upd(s, {"state": {"reported": {"temperature": 21}}})
    assert r.delta is None
    r2 = upd(s, {"state": {"reported": {"on": False}}})
    assert r2.delta["state"] == {"on": True}


def test_storage_roundtrip():
    s = upd(Shadow("t", "cfg"), {"state": {"desired": {"a": [1, {"b": 2}]}}}).shadow
    back = Shadow.from_json("t", "cfg", s.to_json())
    assert back == s


def test_version_restarts_when_recreated_more_than_48h_after_delete():
    s = upd(Shadow("t"), {"state": {"reported": {"a": 1}}}, ts=1000).shadow
    gone, _ = apply_delete(s, None, ts=2000)
    assert upd(gone, {"state": {"reported": {"a": 2}}}, ts=2000 + 47 * 3600).shadow.version == 2
    assert upd(gone, {"state": {"reported": {"a": 2}}}, ts=2000 + 49 * 3600).shadow.version == 1
