"""Connection against a real mosquitto: connect, pub/sub, manual ack, reconnect, bad input."""

from __future__ import annotations

import asyncio
import time

import pytest

from fleetdesk.cloud.connection import Connection, State
from fleetdesk.cloud.errors import ConnectFailed
from fleetdesk.cloud.settings import ConnectionSettings
from fleetdesk.errors import ConfigError


def app_settings(broker, client_id="app", **kw) -> ConnectionSettings:
    return ConnectionSettings(host="127.0.0.1", port=broker.port, client_id=client_id, ca_file=broker.ca_file,
                              username="app", password="app-secret", min_reconnect_ms=100,
                              max_reconnect_ms=500, **kw)


async def wait_for(pred, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.02)


async def test_missing_ca_is_reported_at_once(tmp_path):
    s = ConnectionSettings(host="127.0.0.1", port=8883, client_id="x", ca_file=str(tmp_path / "nope.pem"),
                           username="u", password="p")
    conn = Connection(s)
    states = []
    conn.add_state_listener(lambda ev: states.append(ev.state))
    with pytest.raises(ConfigError, match="CA file .* does not exist"):
        await conn.start()
    assert State.CONNECTING not in states, f"refused only after trying to connect: {states}"


async def test_mtls_pubsub_and_state_events(broker):
    cert, key = broker.client_cert("thing-1")
    dev = Connection(ConnectionSettings(host="localhost", port=broker.mtls_port, client_id="thing-1",
                                        ca_file=broker.ca_file, cert_file=cert, key_file=key, clean_start=True))
    app = Connection(app_settings(broker, clean_start=True))
    states = []
    app.add_state_listener(lambda ev: states.append(ev.state))
    got = []
    try:
        await dev.start()
        await app.start()
        await dev.wait_connected(10)
        await app.wait_connected(10)
        await app.subscribe("dt/+/env", lambda m: got.append((m.topic, m.json())))
        await dev.publish("dt/thing-1/env", {"temperature": 21.5, "seq": 1})
        await wait_for(lambda: got)
        assert got == [("dt/thing-1/env", {"temperature": 21.5, "seq": 1})]
    finally:
        await dev.stop()
        await app.stop()
    assert states[:2] == [State.CONNECTING, State.CONNECTED]
    assert states[-1] == State.STOPPED


async def test_wrong_password_fails_fast_with_reason(broker):
    s = app_settings(broker, clean_start=True)
    s.password = "wrong"
    conn = Connection(s)
    await conn.start()
    try:
        with pytest.raises(ConnectFailed) as info:
            await conn.wait_connected(10)
        assert "NOT_AUTHORIZED" in info.value.reason or "BAD_USERNAME" in info.value.reason
        assert conn.state.state == State.FAILED
    finally:
        await conn.stop()


async def test_unacked_messages_are_redelivered_after_broker_restart(broker):
    """Persistent session + manual ack: a message not yet stored is not lost."""
    app = Connection(app_settings(broker, client_id="app-persist"))
    pub = Connection(app_settings(broker, client_id="pub", clean_start=True))
    held, seen = [], []
    states = []
    app.add_state_listener(lambda ev: states.append(ev.state))
    try:
        await app.start()
        await pub.start()
        await app.wait_connected(10)
        await pub.wait_connected(10)
        await app.subscribe("dt/+/env", lambda m: (seen.append(m.json()["seq"]), held.append(m)), manual_ack=True)
        await pub.publish("dt/t/env", {"seq": 1})
        await wait_for(lambda: seen == [1])
        # never acked -> broker keeps it; restart the broker
        await pub.stop()
        await asyncio.to_thread(broker.restart)
        await wait_for(lambda: State.RECONNECTING in states, 10)
        await wait_for(lambda: len(seen) >= 2, 20)
        assert seen[-1] == 1  # redelivered
        assert states[-1] == State.CONNECTED
        held[-1].ack()
    finally:
        await app.stop()
        await pub.stop()


def test_filter_cover_rules():
    from fleetdesk.cloud.topics import covers

    assert covers("+/logs", "t1/logs") and covers("#", "a/b") and covers("dt/#", "dt/+/env")
    assert not covers("t1/logs", "+/logs") and not covers("+/logs", "a/b/logs") and not covers("#", "$aws/x")
    assert covers("$aws/things/+/shadow/update/+", "$aws/things/t1/shadow/update/delta")
    assert not covers("dt/+/env", "dt/#")


async def test_overlapping_subscriptions_deliver_once(broker):
    app = Connection(app_settings(broker, client_id="app-overlap", clean_start=True))
    pub = Connection(app_settings(broker, client_id="pub-overlap", clean_start=True))
    narrow, broad = [], []
    try:
        for c in (app, pub):
            await c.start()
            await c.wait_connected(10)
        rm_narrow = await app.subscribe("t1/logs", lambda m: narrow.append(m.payload))
        rm_broad = await app.subscribe("+/logs", lambda m: broad.append(m.payload))
        await pub.publish("t1/logs", b"1")
        await pub.publish("t2/logs", b"2")
        await wait_for(lambda: len(broad) == 2)
        await asyncio.sleep(0.3)  # a window for a duplicate delivery to the narrow filter (none may come)
        assert narrow == [b"1"] and sorted(broad) == [b"1", b"2"]
        await rm_broad()  # the narrow filter must be re-subscribed at the broker
        await pub.publish("t1/logs", b"3")
        await wait_for(lambda: len(narrow) == 2)
        assert narrow == [b"1", b"3"] and len(broad) == 2
        await rm_narrow()
    finally:
        await app.stop()
        await pub.stop()


async def test_unsubscribing_and_stopping_with_the_broker_gone_wait_for_nothing(broker):
    """With the broker gone, removing subscriptions and stopping return at once (each UNSUBSCRIBE
    used to wait 10 s for a broker that never answers, a session's stop 30 s); the UNSUBSCRIBEs
    reach the resumed session when the broker is back, so it sends nothing for those filters."""
    app = Connection(app_settings(broker, client_id="app-offline-unsub"))
    pub = Connection(app_settings(broker, client_id="pub-offline-unsub", clean_start=True))
    kept = []
    try:
        await app.start()
        await app.wait_connected(10)
        removers = [await app.subscribe(f"gone/{i}", lambda m: None) for i in range(3)]
        await app.subscribe("kept/x", kept.append)
        await asyncio.to_thread(broker.stop)
        await wait_for(lambda: app.state.state == State.RECONNECTING, 10)
        # bounded well below one UNSUBSCRIBE's own 10 s timeout: none of them waits on the broker
        await asyncio.wait_for(asyncio.gather(*(remove() for remove in removers)), 5)
        await asyncio.to_thread(broker.start)
        await wait_for(lambda: app.state.state == State.CONNECTED, 20)
        await app.subscribe("sync/x", lambda m: None)  # queued after the catch-up: its SUBACK orders them
        await pub.start()
        await pub.wait_connected(10)
        received = app.stats["received"]
        await pub.publish("gone/0", {"n": 1})
        await pub.publish("kept/x", {"n": 2})
        await wait_for(lambda: kept, 10)
        assert app.stats["received"] - received == 1, "the broker still sent a filter removed while it was gone"
        await asyncio.to_thread(broker.stop)
        await wait_for(lambda: app.state.state == State.RECONNECTING, 10)
        await asyncio.wait_for(app.stop(), 5)
        assert app.state.state == State.STOPPED
    finally:
        await app.stop()
        await pub.stop()
