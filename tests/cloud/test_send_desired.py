"""An editor's desired change against the real sandbox while the device keeps reporting.

A device reports its readings into its shadow, so the version an edit was made against moves
all the time. ``Shadows.update_desired`` (the Device page's send) must land the change over
those reports, however many arrive between a 409's reload and the resend, and must still hand
back a desired key someone else changed. With a fleet index (a scoped session) the device a page
shows must stay followed while any of its watchers still wants it.
"""

from __future__ import annotations

import asyncio
import json
import uuid

import boto3
import pytest

from fleetdesk.cloud.errors import ShadowConflict, ShadowRejected
from fleetdesk.cloud.session import CloudSession, app_settings
from fleetdesk.config import Profile
from fleetdesk.store.telemetry import TelemetryStore

from .test_connection import wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
def profile(sandbox, monkeypatch):
    monkeypatch.setenv("FLEETDESK_SANDBOX_DIR", str(sandbox.state_dir))
    return Profile(state_dir=str(sandbox.state_dir))


@pytest.fixture
async def session(profile, tmp_path):
    s = CloudSession(profile, store=TelemetryStore(tmp_path / "tel.db", retention_days=None),
                     settings=app_settings(profile, ephemeral=True))
    try:
        yield s
    finally:
        await s.stop()


@pytest.fixture
def data(sandbox):
    return boto3.client("iot-data", **sandbox.boto3_kwargs())


def report(data, thing: str, **reported) -> int:
    """The device reports (committed when this returns); the new version."""
    out = data.update_thing_shadow(thingName=thing, payload=json.dumps({"state": {"reported": reported}}))
    return json.loads(out["payload"].read())["version"]


def reports_after_each_reload(session, data, thing: str, times: int) -> list[int]:
    """The device reports once more right after each of the next ``times`` reloads of its shadow
    (a 409's reload), i.e. before the resend can arrive: the worst case of a busy device."""
    real_get = session.shadows.get
    versions: list[int] = []

    async def get(name, shadow=None):
        doc = await real_get(name, shadow)
        if name == thing and len(versions) < times:
            versions.append(await asyncio.to_thread(report, data, thing, temperature=30 + len(versions)))
        return doc

    session.shadows.get = get
    return versions


async def test_a_change_lands_over_the_devices_reports_between_every_reload_and_resend(session, data):
    thing = f"sd-{uuid.uuid4().hex[:8]}"
    report(data, thing, temperature=20, refresh=10000)
    await session.start(use_index=False)
    base = await session.shadows.get(thing)
    report(data, thing, temperature=21)  # the user's edit is now stale
    versions = reports_after_each_reload(session, data, thing, times=3)
    doc, resends = await session.shadows.update_desired(thing, {"refresh": 2000}, version=base["version"], base=base)
    # 409, reload + report, resend (409) x3, then the resend over the last reload lands
    assert len(versions) == 3 and resends == 4, (versions, resends)
    assert doc["version"] == versions[-1] + 1
    now = await session.shadows.get(thing)
    assert now["state"]["desired"] == {"refresh": 2000}
    assert now["state"]["reported"]["temperature"] == 32, "the device's own reports were overwritten"


async def test_a_desired_key_someone_else_changed_comes_back_to_the_user(session, data):
    thing = f"sd-{uuid.uuid4().hex[:8]}"
    report(data, thing, temperature=20)
    await session.start(use_index=False)
    base = await session.shadows.get(thing)
    report(data, thing, temperature=21)
    reports_after_each_reload(session, data, thing, times=1)
    real_update = session.shadows.update
    calls = []

    async def update(which, **kw):  # another user sets the same key while our first resend is on its way
        calls.append(kw.get("version"))
        if len(calls) == 2:
            await asyncio.to_thread(data.update_thing_shadow, thingName=thing,
                                    payload=json.dumps({"state": {"desired": {"refresh": 4000}}}))
        return await real_update(which, **kw)

    session.shadows.update = update
    with pytest.raises(ShadowConflict) as conflict:
        await session.shadows.update_desired(thing, {"refresh": 2000}, version=base["version"], base=base)
    changed = conflict.value.changed  # since the user's edit (no desired section then: "desired" as a whole)
    assert "reported.temperature" in changed and {"desired", "desired.refresh"} & set(changed), changed
    assert conflict.value.current["state"]["desired"] == {"refresh": 4000}
    assert len(calls) == 2, "sent again over someone else's desired change"
    assert (await session.shadows.get(thing))["state"]["desired"] == {"refresh": 4000}, "their change was overwritten"


async def test_a_device_reporting_faster_than_any_resend_ends_in_a_conflict_not_a_loop(session, data):
    thing = f"sd-{uuid.uuid4().hex[:8]}"
    report(data, thing, temperature=20)
    await session.start(use_index=False)
    base = await session.shadows.get(thing)
    report(data, thing, temperature=21)
    reports_after_each_reload(session, data, thing, times=100)
    with pytest.raises(ShadowConflict) as conflict:
        await session.shadows.update_desired(thing, {"refresh": 2000}, version=base["version"], base=base,
                                             max_resends=2)
    assert [p for p in conflict.value.changed if not p.startswith("reported.")] == [], conflict.value.changed
    assert "desired" not in (await session.shadows.get(thing))["state"]


async def test_scoped_the_shown_device_stays_followed_while_one_of_its_watchers_remains(session, data):
    """The Device page reopening the device it shows starts a second watch before the first stops;
    the first one's stop must not unpin it, or a bulk action evicts it and the page never hears
    the device report the change it sent."""
    thing = f"sd-{uuid.uuid4().hex[:8]}"
    report(data, thing, temperature=20)
    await session.start(use_index=True)  # scoped: shadows followed per thing
    session.shadows.max_followed = 2
    subs = session.conn._subs
    topic = f"$aws/things/{thing}/shadow/+/+"
    first = await session.watch_telemetry(thing)
    second = await session.watch_telemetry(thing)
    await first()
    for i in range(4):  # other things' requests need the room
        with pytest.raises(ShadowRejected):
            await session.shadows.get(f"{thing}-other-{i}")
    assert topic in subs, "the shown device was evicted while a watcher still wants it"
    events = []
    session.shadows.add_listener(events.append)
    report(data, thing, refresh=2000)
    await wait_for(lambda: any(e.thing == thing and e.kind == "documents"
                               and e.doc["current"]["state"]["reported"].get("refresh") == 2000 for e in events), 10)
    await second()
    for i in range(4):
        with pytest.raises(ShadowRejected):
            await session.shadows.get(f"{thing}-other-{i}")
    assert topic not in subs and len([f for f in subs if f.startswith("$aws/things/")]) <= 2 * 2
