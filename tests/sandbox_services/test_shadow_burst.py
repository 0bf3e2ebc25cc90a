"""A burst of shadow updates is answered in full: every request accepted or rejected, none silently lost."""

from __future__ import annotations

import json
import time
import uuid

import pytest

pytestmark = pytest.mark.slow


def test_burst_of_updates_is_fully_answered(observer, data):
    prefix = f"burst-{uuid.uuid4().hex[:6]}"
    things, per_thing = 50, 20
    obs = observer([f"$aws/things/+/shadow/update/accepted", f"$aws/things/+/shadow/update/rejected"])
    for i in range(things * per_thing):
        obs.c.publish(f"$aws/things/{prefix}-{i % things}/shadow/update",
                      json.dumps({"state": {"reported": {"seq": i}}, "clientToken": str(i)}), qos=1)
    answered: dict[str, str] = {}
    end = time.monotonic() + 60
    while len(answered) < things * per_thing and time.monotonic() < end:
        try:
            topic, payload = obs.messages.get(timeout=1)
        except Exception:  # noqa: BLE001 - queue.Empty: keep waiting until the deadline
            continue
        if topic.startswith(f"$aws/things/{prefix}-"):
            answered[json.loads(payload)["clientToken"]] = topic.rsplit("/", 1)[1]
    assert len(answered) == things * per_thing
    accepted = sum(1 for v in answered.values() if v == "accepted")
    rejected = [v for v in answered.values() if v == "rejected"]
    versions = sum(json.loads(data.get_thing_shadow(thingName=f"{prefix}-{t}")["payload"].read())["version"]
                   for t in range(things))
    assert versions == accepted and accepted + len(rejected) == things * per_thing
