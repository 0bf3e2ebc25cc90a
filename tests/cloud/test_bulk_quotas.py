"""A bulk desired change over more things than IoT Core lets one connection publish in a
second, made by the app through the sandbox's quota-enforcing front (WSS + SigV4, as on AWS):
every thing gets it, the app's connection never drops, and the front counts nothing
throttled for the app's client id."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import boto3
import pytest

from fleetdesk.cloud.connection import Connection, State
from fleetdesk.cloud.session import CloudSession, app_settings
from fleetdesk.config import Profile
from fleetdesk.errors import CloudError
from fleetdesk.sandbox.quotas import MQTT_DEFAULTS, load_status

THINGS = 130  # > 100: IoT Core's publishes per second per connection (in and out)


def _throttled(state_dir: str) -> dict:
    return (load_status(Path(state_dir)) or {}).get("mqtt_throttled") or {}


async def _flushed_counts(profile: Profile, state_dir: str) -> dict:
    """The front's throttle counts once everything counted so far is on disk: a marker client
    makes one refusal of its own (a 51st subscription) and we wait until it shows."""
    marker = f"quota-marker-{uuid.uuid4().hex[:8]}"
    conn = Connection(app_settings(profile, client_id=marker, clean_start=True))
    await conn.start()
    try:
        await conn.wait_connected(15)
        limit = int(MQTT_DEFAULTS["SubscriptionsPerConnection"])
        for i in range(limit):
            await conn.subscribe(f"marker/{i}", lambda m: None)
        with pytest.raises(CloudError):
            await conn.subscribe(f"marker/{limit}", lambda m: None)
    finally:
        await conn.stop()
    deadline = time.monotonic() + 15
    while _throttled(state_dir).get(marker, {}).get("SubscriptionsPerConnection") != 1:
        assert time.monotonic() < deadline, f"the front's counts never showed the marker: {_throttled(state_dir)}"
        await asyncio.sleep(0.1)
    return _throttled(state_dir)


@pytest.mark.parametrize("indexed", [True, False], ids=["on-the-index", "following-every-shadow"])
async def test_a_bulk_desired_change_over_130_things_is_never_throttled(sandbox, indexed):
    profile = Profile(name=f"bulk-{uuid.uuid4().hex[:6]}", state_dir=str(sandbox.state_dir))
    prefix = f"bulkq-{uuid.uuid4().hex[:6]}"
    names = [f"{prefix}-{i:03d}" for i in range(THINGS)]
    iot = boto3.client("iot", **sandbox.boto3_kwargs())
    for name in names:
        iot.create_thing(thingName=name)
    client_id = f"fleetdesk-app-{uuid.uuid4().hex[:12]}"
    session = CloudSession(profile, store=False, settings=app_settings(profile, client_id=client_id, clean_start=True))
    states: list[State] = []
    session.conn.add_state_listener(lambda ev: states.append(ev.state))
    await session.start(load_registry=False, use_index=indexed)
    try:
        assert session.conn.settings.auth == "websockets"  # the front AWS would apply, not the internal login
        results = await session.shadows.update_many(names, desired={"on": True})
        failed = {n: r for n, r in results.items() if isinstance(r, Exception)}
        assert not failed and len(results) == THINGS
        assert all(r["state"]["desired"] == {"on": True} for r in results.values())
        if not indexed:  # the app follows every shadow: each update's echo reached it, none dropped
            deadline = time.monotonic() + 30
            while not all(session.fleet.things.get(n) is not None and session.fleet.things[n].desired.get("on")
                          for n in names):
                missing = [n for n in names if not (session.fleet.things.get(n) and
                                                    session.fleet.things[n].desired.get("on"))]
                assert time.monotonic() < deadline, f"{len(missing)} shadow documents never reached the app"
                await asyncio.sleep(0.1)
        assert session.conn.state.state == State.CONNECTED and State.RECONNECTING not in states
    finally:
        await session.stop()
    counts = await _flushed_counts(profile, str(sandbox.state_dir))
    assert counts.get(client_id, {}) == {}, f"the front throttled the app's connection: {counts[client_id]}"


async def test_loading_130_shadows_goes_over_https_not_the_apps_connection(sandbox):
    """The Fleet page without an index loads every thing's shadow: over HTTPS (GetThingShadow),
    so the app's connection publishes nothing for it and the fleet model still gets each one."""
    import json

    profile = Profile(name=f"bulkget-{uuid.uuid4().hex[:6]}", state_dir=str(sandbox.state_dir))
    prefix = f"bulkg-{uuid.uuid4().hex[:6]}"
    names = [f"{prefix}-{i:03d}" for i in range(THINGS)]
    iot = boto3.client("iot", **sandbox.boto3_kwargs())
    data = boto3.client("iot-data", **sandbox.boto3_kwargs())
    for i, name in enumerate(names[:-1]):  # the last one has no shadow yet
        iot.create_thing(thingName=name)
        data.update_thing_shadow(thingName=name, payload=json.dumps(
            {"state": {"reported": {"firmware_version": f"1.2.{i % 3}"}}}))
    iot.create_thing(thingName=names[-1])
    session = CloudSession(profile, store=False, settings=app_settings(profile, ephemeral=True))
    await session.start(load_registry=False, use_index=False)
    try:
        for name in names:
            session.fleet.thing(name)
        published = session.conn.stats["published"]
        await session.load_shadows()
        assert [session.fleet.things[n].firmware for n in names[:-1]] == [f"1.2.{i % 3}" for i in range(THINGS - 1)]
        assert session.fleet.things[names[-1]].firmware in (None, "")
        assert session.conn.stats["published"] == published  # not one shadow request on the app's connection
    finally:
        await session.stop()
