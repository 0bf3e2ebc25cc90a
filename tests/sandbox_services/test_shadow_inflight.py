"""The shadow service without a broker: per-thing in-flight limit (429), ordering, durability."""

from __future__ import annotations

import asyncio
import json

from fleetdesk.sandbox.shadow_service import ShadowService
from fleetdesk.sandbox.shadow_store import ShadowStore


async def _drained(svc: ShadowService, turns: int = 1000) -> None:
    """Give the event loop turns until the service has handled every queued message (no wall clock involved)."""
    for _ in range(turns):
        await asyncio.sleep(0)
        if not svc._scheduled and not svc.inflight:
            return
    raise AssertionError(f"the shadow service did not drain in {turns} loop turns (in flight: {svc.inflight})")


async def test_more_than_ten_in_flight_per_thing_is_429(tmp_path):
    sent: list[tuple[str, dict]] = []
    svc = ShadowService(ShadowStore(tmp_path / "s.db"), lambda t, p: sent.append((t, p)))
    for i in range(15):  # a burst faster than the service drains it
        svc.on_message("$aws/things/a/shadow/update",
                       json.dumps({"state": {"reported": {"i": i}}, "clientToken": f"t{i}"}).encode())
    svc.on_message("$aws/things/b/shadow/update", b'{"state":{"reported":{"x":1}},"clientToken":"other"}')
    await _drained(svc)
    rejected = [p for t, p in sent if t == "$aws/things/a/shadow/update/rejected"]
    accepted = [p for t, p in sent if t == "$aws/things/a/shadow/update/accepted"]
    assert [r["code"] for r in rejected] == [429] * 5
    assert [r["clientToken"] for r in rejected] == [f"t{i}" for i in range(10, 15)]
    assert [a["version"] for a in accepted] == list(range(1, 11))  # in order, none lost
    assert any(t == "$aws/things/b/shadow/update/accepted" for t, _ in sent)  # other things unaffected
    assert svc.inflight == {}


async def test_accepted_only_after_commit_and_reload(tmp_path):
    sent = []
    svc = ShadowService(ShadowStore(tmp_path / "s.db"), lambda t, p: sent.append(t))
    svc.handle("t", "", "update", b'{"state":{"desired":{"on":true}}}')
    assert sent == ["$aws/things/t/shadow/update/accepted", "$aws/things/t/shadow/update/delta",
                    "$aws/things/t/shadow/update/documents"]
    svc.store.close()
    again = ShadowStore(tmp_path / "s.db")
    assert again.get("t").desired == {"on": True} and again.get("t").version == 1


async def test_garbage_topics_and_payloads_never_crash(tmp_path):
    sent = []
    svc = ShadowService(ShadowStore(tmp_path / "s.db"), lambda t, p: sent.append((t, p)))
    for topic, payload in [("$aws/things/t/shadow/get", b"\xff\xfe"), ("$aws/things/t/shadow/bogus", b"{}"),
                           ("$aws/things/t/shadow/name/bad name!/get", b"{}"),
                           ("$aws/things/t/shadow/update", b"null"), ("$aws/things/t/shadow/delete", b"[]")]:
        svc.on_message(topic, payload)
    await _drained(svc)
    codes = sorted(p["code"] for t, p in sent if t.endswith("/rejected"))
    assert codes == [400, 400, 400, 400]


def _random_value(rng, depth=0):
    kind = rng.randrange(8 if depth < 8 else 5)
    if kind == 0:
        return None
    if kind == 1:
        return rng.random() * 100
    if kind == 2:
        return "".join(rng.choice("ab\u00e9\"\\{}") for _ in range(rng.randrange(5)))
    if kind == 3:
        return rng.choice([True, False])
    if kind == 4:
        return rng.randrange(-5, 5)
    if kind == 5:
        return [_random_value(rng, depth + 1) for _ in range(rng.randrange(3))]
    return {rng.choice(["a", "b", "desired", "reported", "state", "version", "clientToken"]):
            _random_value(rng, depth + 1) for _ in range(rng.randrange(4))}


async def test_fuzzed_requests_each_get_exactly_one_answer(tmp_path):
    import random

    rng = random.Random(1234)
    sent: list[tuple[str, dict]] = []
    svc = ShadowService(ShadowStore(tmp_path / "s.db"), lambda t, p: sent.append((t, p)))
    for i in range(400):
        op = rng.choice(["update", "update", "get", "delete"])
        if rng.random() < 0.2:
            payload = bytes(rng.randrange(256) for _ in range(rng.randrange(30)))
        else:
            doc = {"state": {"desired": _random_value(rng), "reported": _random_value(rng)}}
            if rng.random() < 0.5:
                doc = _random_value(rng) if rng.random() < 0.3 else doc
            payload = json.dumps(doc).encode()
        before = len(sent)
        svc.handle("fz", "", op, payload)
        replies = [t for t, _ in sent[before:] if t.endswith(("/accepted", "/rejected"))]
        assert len(replies) == 1 and replies[0].startswith(f"$aws/things/fz/shadow/{op}/"), (op, payload)
        if replies[0].endswith("/rejected"):
            assert sent[before][1]["code"] in (400, 404, 409, 413)
    assert svc.store.get("fz").version >= 1


def test_corrupt_store_is_a_clear_error_and_is_kept(tmp_path):
    import pytest

    from fleetdesk.errors import SandboxError
    from fleetdesk.sandbox.jobs_service import JobsStore

    for name, opener in (("s.db", ShadowStore), ("j.db", JobsStore)):
        bad = tmp_path / name
        bad.write_bytes(b"this is not a database" * 100)
        with pytest.raises(SandboxError, match="unusable") as e:
            opener(bad)
        assert e.value.advice and bad.read_bytes().startswith(b"this is not")  # nothing wiped
