"""A session on the fleet index hears presence only for the things a page follows, never the
whole fleet's, and never holds more subscriptions than IoT Core allows a connection (50)."""

from __future__ import annotations

import uuid

import boto3
import pytest
from helpers_sandbox import connected_device

from fleetdesk.cloud.presence import FOLLOW_MAX
from fleetdesk.cloud.session import CloudSession, app_settings
from fleetdesk.config import Profile

from .test_connection import wait_for

pytestmark = pytest.mark.slow

AWS_SUBSCRIPTIONS_PER_CONNECTION = 50


@pytest.fixture
async def scoped_session(sandbox, monkeypatch):
    monkeypatch.setenv("FLEETDESK_SANDBOX_DIR", str(sandbox.state_dir))
    profile = Profile(state_dir=str(sandbox.state_dir))
    s = CloudSession(profile, store=False, settings=app_settings(profile, ephemeral=True))
    await s.start(use_index=True)
    try:
        yield s
    finally:
        await s.stop()


async def test_scoped_presence_follows_only_the_things_asked_for(sandbox, scoped_session, tmp_path):
    session = scoped_session
    assert session.presence.scoped and session.presence.followed == []
    iot = boto3.client("iot", **sandbox.boto3_kwargs())
    shown, hidden = f"ps-{uuid.uuid4().hex[:8]}", f"ps-{uuid.uuid4().hex[:8]}"
    await session.presence.follow_only([shown])
    dev_shown, _ = await connected_device(sandbox, iot, tmp_path, shown)
    dev_hidden, _ = await connected_device(sandbox, iot, tmp_path, hidden)
    try:
        await wait_for(lambda: shown in session.fleet.things and session.fleet.things[shown].online is True, 15)
    finally:
        await dev_shown.stop()
        await dev_hidden.stop()
    await wait_for(lambda: session.fleet.things[shown].online is False, 15)
    assert hidden not in session.fleet.things  # its connect and disconnect never reached the app

    # a page of 100 rows: at most FOLLOW_MAX filters, and the connection stays within AWS's 50
    await session.presence.follow_only([f"ps-row-{i:03d}" for i in range(100)])
    assert session.presence.followed == [f"ps-row-{i:03d}" for i in range(FOLLOW_MAX)]
    assert len(session.conn._subs) <= AWS_SUBSCRIPTIONS_PER_CONNECTION
    for i in range(20):  # a bulk Set desired: the shadow service follows as many things as it keeps
        await session.shadows.follow(f"ps-bulk-{i:02d}")
    assert len(session.conn._subs) <= AWS_SUBSCRIPTIONS_PER_CONNECTION, sorted(session.conn._subs)
    # the Device page's thing stays followed whatever the Fleet page shows, until its last watcher stops
    stop_first = await session.watch_telemetry(shown)
    stop_second = await session.watch_telemetry(shown)
    assert session.presence.followed[0] == shown and len(session.presence.followed) == FOLLOW_MAX
    await session.presence.follow_only([])
    assert session.presence.followed == [shown]
    await stop_first()
    assert session.presence.followed == [shown]
    await stop_second()
    assert session.presence.followed == []
    assert not any(f.startswith("$aws/events/presence/") for f in session.conn._subs)
