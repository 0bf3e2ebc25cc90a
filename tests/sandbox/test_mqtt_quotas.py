"""IoT Core's per-connection MQTT quotas on the sandbox's device port (the mTLS front), at AWS's
default values: what a device over a quota sees, and the counts `sandbox status --json` shows."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import uuid

import pytest
from helpers_sandbox import Mqtt5, mtls_builder, poll
from raw_mqtt import RawMqtt

from fleetdesk.cloud.identity import create_device_identity

pytestmark = pytest.mark.slow

OPEN_POLICY = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "iot:*", "Resource": "*"}]}


@pytest.fixture(scope="module")
def front(tmp_path_factory):
    """A sandbox as it starts by default (front on, quotas at AWS's defaults)."""
    from fleetdesk.sandbox.child import start_sandbox, stop_sandbox

    env = {k: v for k, v in os.environ.items() if k not in ("FLEETDESK_SANDBOX_FRONT", "FLEETDESK_SANDBOX_QUOTAS")}
    proc, info = start_sandbox(tmp_path_factory.mktemp("quotas") / "state", env=env)
    try:
        yield info
    finally:
        stop_sandbox(proc)


@pytest.fixture(scope="module")
def iot(front):
    import boto3

    return boto3.client("iot", **front.boto3_kwargs())


@pytest.fixture
def raw(front, iot):
    """raw(level) -> (RawMqtt not yet connected, its thing name); all closed at the end."""
    made: list[RawMqtt] = []

    def make(policy_name: str | None = None):
        ident = create_device_identity(iot, f"q-{uuid.uuid4().hex[:10]}", policy_name=policy_name)
        conn = RawMqtt(front, ident.certificate_pem, ident.private_key_pem)
        made.append(conn)
        return conn, ident

    yield make
    for conn in made:
        conn.close()


def status(front) -> dict:
    """`fleetdesk sandbox status --json` for this sandbox."""
    out = subprocess.run([sys.executable, "-m", "fleetdesk", "sandbox", "status", "--json",
                          "--state-dir", str(front.state_dir)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def throttled(front, client_id: str, quota: str) -> int:
    """What the sandbox counted (the file `sandbox status --json` reads; written within a second)."""
    from pathlib import Path

    from fleetdesk.sandbox.quotas import load_status

    return ((load_status(Path(front.state_dir)) or {}).get("mqtt_throttled") or {}).get(client_id, {}).get(quota, 0)


def counted(front, client_id: str, quota: str, n: int) -> None:
    """Wait until the sandbox has counted ``n`` refusals of ``quota`` for ``client_id``."""
    poll(lambda: throttled(front, client_id, quota) == n, timeout=10)


def _publish_150_at_once(front, dev: RawMqtt, client_id: str, topic: str) -> tuple[set[int], int]:
    """Send 150 QoS 1 publishes in one write; wait until each is either acknowledged or counted
    as throttled (no PUBACK ever comes for those). Returns (the acknowledged packet ids, the count)."""
    dev.sock.sendall(b"".join(dev.publish_packet(topic, b"{}") for _ in range(150)))
    acked: set[int] = set()

    def settled():
        dropped = throttled(front, client_id, "PublishInPerSecond")
        while len(acked) + dropped < 150:
            dev.sock.settimeout(2.0)
            try:
                first, body = dev.read()
            except TimeoutError:
                return False
            if first >> 4 == 4:
                acked.add(struct.unpack_from(">H", body, 0)[0])
        return True

    poll(settled, timeout=30)
    return acked, throttled(front, client_id, "PublishInPerSecond")


def test_status_shows_the_mqtt_quotas_in_force(front):
    quotas = status(front)["quotas"]
    assert {k: quotas[k] for k in ("PublishInPerSecond", "PublishOutPerSecond", "SubscriptionsPerConnection",
                                   "TopicFiltersPerSubscribe", "ConnectPerSecondPerClientId", "KeepAliveMin",
                                   "KeepAliveMax", "SessionExpiryMax", "PayloadMax")} == {
        "PublishInPerSecond": 100, "PublishOutPerSecond": 100, "SubscriptionsPerConnection": 50,
        "TopicFiltersPerSubscribe": 8, "ConnectPerSecondPerClientId": 1, "KeepAliveMin": 30,
        "KeepAliveMax": 1200, "SessionExpiryMax": 3600, "PayloadMax": 131072}


def test_150_qos1_publishes_at_once_lose_the_excess_without_puback_and_it_is_counted(front, raw):
    dev, ident = raw()
    assert dev.connect(ident.thing_name, level=4)[0] == 0
    acked, dropped = _publish_150_at_once(front, dev, ident.thing_name, f"dt/{ident.thing_name}/env")
    assert len(acked) + dropped == 150
    assert status(front)["mqtt_throttled"][ident.thing_name]["PublishInPerSecond"] == dropped
    assert len(acked) >= 100, "one second's worth (100) must get through"
    assert dropped >= 1, "150 publishes sent at once were all acknowledged: no per-connection rate"
    dev.ping()  # the connection stays up (AWS drops the excess, not the device)


def test_a_subscriber_gets_at_most_its_rate_and_the_rest_is_counted(front, iot, raw, devices):
    try:
        iot.create_policy(policyName="quota-test-open", policyDocument=json.dumps(OPEN_POLICY))
    except iot.exceptions.ResourceAlreadyExistsException:
        pass
    topic = f"q/{uuid.uuid4().hex[:8]}"
    sub_ident = create_device_identity(iot, f"s-{uuid.uuid4().hex[:10]}", policy_name="quota-test-open")
    sub = devices(front, sub_ident)
    assert sub.connect(), sub.failure
    assert sub.subscribe(f"{topic}/#") < 128
    pubs = []
    for _ in range(2):
        p, ident = raw("quota-test-open")
        assert p.connect(ident.thing_name, level=4)[0] == 0
        pubs.append(p)
    bursts = [b"".join(p.publish_packet(f"{topic}/x", b"{}", qos=0) for _ in range(75)) for p in pubs]
    for p, burst in zip(pubs, bursts, strict=True):
        p.sock.sendall(burst)
    got: list = []

    def all_accounted():
        while not sub.messages.empty():
            got.append(sub.messages.get_nowait())
        dropped = throttled(front, sub_ident.thing_name, "PublishOutPerSecond")
        return len(got) + dropped == 150

    poll(all_accounted, timeout=30)
    dropped = throttled(front, sub_ident.thing_name, "PublishOutPerSecond")
    assert len(got) >= 100 and dropped >= 1, (len(got), dropped)
    # the front acknowledged the dropped QoS 1 deliveries to the broker: later ones still arrive
    pubs[0].sock.sendall(pubs[0].publish_packet(f"{topic}/after", b"{}", qos=0))
    assert sub.receive(timeout=15)[0] == f"{topic}/after"
    assert status(front)["mqtt_throttled"][sub_ident.thing_name]["PublishOutPerSecond"] == dropped


@pytest.mark.parametrize("level, refused", [(5, 0x97), (4, 0x80)])
def test_51st_subscription_and_9_filters_in_one_subscribe_are_refused(front, raw, level, refused):
    dev, ident = raw()
    assert dev.connect(ident.thing_name, level=level)[0] == 0
    filters = [f"dt/{ident.thing_name}/f{i}" for i in range(51)]
    assert dev.subscribe(filters[:9]) == [refused] * 9, "9 topic filters in one SUBSCRIBE (AWS allows 8)"
    granted = []
    for i in range(0, 50, 8):
        granted += dev.subscribe(filters[i:min(i + 8, 50)])
    assert granted == [1] * 50
    assert dev.subscribe(filters[:3]) == [1] * 3, "re-subscribing a held filter is not a new subscription"
    assert dev.subscribe([filters[50]]) == [refused], "the 51st subscription of one connection"
    dev.unsubscribe([filters[0]])
    assert dev.subscribe([filters[50]]) == [1], "a freed place can be used again"
    counted(front, ident.thing_name, "SubscriptionsPerConnection", 1)
    counted(front, ident.thing_name, "TopicFiltersPerSubscribe", 1)


def test_subscription_identifiers_are_not_available(front, raw):
    dev, ident = raw()
    code, props = dev.connect(ident.thing_name, level=5)
    assert code == 0 and props.get(0x29) == b"\x00", props  # Subscription Identifier Available: 0
    assert dev.subscribe([f"dt/{ident.thing_name}/a"], props=b"\x0b\x07") == [0xA1]
    assert dev.subscribe([f"dt/{ident.thing_name}/a"]) == [1]


@pytest.mark.parametrize("asked, given", [(5, 30), (0, 1200), (3000, 1200), (60, None)])
def test_keep_alive_is_bounded_30_to_1200_and_the_connack_says_so(front, raw, asked, given):
    dev, ident = raw()
    code, props = dev.connect(ident.thing_name, level=5, keep_alive=asked)
    assert code == 0
    assert (struct.unpack(">H", props[0x13])[0] if 0x13 in props else None) == given, props


def test_session_expiry_over_an_hour_is_capped_in_the_connack(front, raw):
    dev, ident = raw()
    code, props = dev.connect(ident.thing_name, level=5, props=b"\x11" + struct.pack(">I", 7 * 24 * 3600))
    assert code == 0 and struct.unpack(">I", props[0x11])[0] == 3600, props


@pytest.mark.parametrize("level", [5, 4])
def test_second_connect_within_a_second_with_the_same_client_id_is_refused(front, iot, raw, level):
    first, ident = raw()
    assert first.connect(ident.thing_name, level=level)[0] == 0
    second = RawMqtt(front, ident.certificate_pem, ident.private_key_pem)
    try:
        if level == 5:
            assert second.connect(ident.thing_name, level=5)[0] == 0x9F  # Connection rate exceeded
        else:
            with pytest.raises(ConnectionError):
                second.connect(ident.thing_name, level=4)
    finally:
        second.close()
    first.ping()  # the session holding the id was not taken over
    counted(front, ident.thing_name, "ConnectPerSecondPerClientId", 1)


def test_awsiotsdk_reconnect_after_a_throttled_connect_gets_in(front, iot, devices):
    """What a device SDK does about it: its retry (after its back-off) connects."""
    ident = create_device_identity(iot, f"r-{uuid.uuid4().hex[:10]}")
    first = devices(front, ident)
    assert first.connect(), first.failure
    second = Mqtt5(lambda **cb: mtls_builder(front, ident.certificate_pem, ident.private_key_pem,
                                             ident.thing_name)(**cb))
    try:
        assert second.connect(), second.failure  # waits through CONNACK 0x9F and the SDK's retry
        poll(lambda: throttled(front, ident.thing_name, "ConnectPerSecondPerClientId") >= 1, timeout=10)
    finally:
        second.stop()


def test_a_payload_over_128_kb_ends_the_connection(front, raw):
    dev, ident = raw()
    assert dev.connect(ident.thing_name, level=5)[0] == 0
    dev.sock.sendall(dev.publish_packet(f"dt/{ident.thing_name}/big", b"x" * 131073))
    first, body = dev.read()
    assert (first, body[:1]) == (0xE0, b"\x95"), (first, body)  # DISCONNECT "Packet too large"
    with pytest.raises(ConnectionError):
        dev.read()
    counted(front, ident.thing_name, "PayloadMax", 1)


def test_quota_overrides_name_mqtt_quotas_and_refuse_unknown_ones():
    from fleetdesk.sandbox.quotas import Quotas, parse_overrides

    q = Quotas(None, parse_overrides("PublishInPerSecond=1000,SubscriptionsPerConnection=off"))
    assert q.mqtt["PublishInPerSecond"] == 1000 and q.mqtt["SubscriptionsPerConnection"] is None
    with pytest.raises(ValueError, match="unknown quota 'PublishesPerSecond'"):
        parse_overrides("PublishesPerSecond=5")


async def test_the_apps_connection_resubscribes_within_8_filters_per_subscribe(front, iot, tmp_path):
    """fleetdesk's Connection holding 10 subscriptions gets them all back after a reconnect that
    lost the session (IoT Core refuses a SUBSCRIBE of more than 8 filters)."""
    import asyncio

    from helpers_sandbox import connected_device

    conn, ident = await connected_device(front, iot, tmp_path, f"c-{uuid.uuid4().hex[:10]}")
    got: asyncio.Queue = asyncio.Queue()
    try:
        for i in range(10):
            await conn.subscribe(f"dt/{ident.thing_name}/s{i}", lambda msg: got.put_nowait(msg.topic))
        # another connection takes the client id over (then goes away): ours reconnects, clean session
        taker = RawMqtt(front, ident.certificate_pem, ident.private_key_pem)
        deadline = asyncio.get_running_loop().time() + 15
        while (await asyncio.to_thread(taker.connect, ident.thing_name, 5))[0] == 0x9F:
            assert asyncio.get_running_loop().time() < deadline, "the takeover CONNECT stayed throttled"
            taker.close()
            await asyncio.sleep(0.25)
            taker = RawMqtt(front, ident.certificate_pem, ident.private_key_pem)
        taker.sock.settimeout(20)
        with pytest.raises(ConnectionError):  # our Connection took the id back
            await asyncio.to_thread(lambda: [taker.read() for _ in range(100)])
        taker.close()
        topic = f"dt/{ident.thing_name}/s9"
        for _ in range(30):
            await conn.publish(topic, {"n": 1}, qos=1)
            try:
                assert await asyncio.wait_for(got.get(), 1.0) == topic
                break
            except asyncio.TimeoutError:
                continue
        else:
            raise AssertionError(f"no message on {topic} after the reconnect: its subscription was not restored")
    finally:
        await conn.stop()


def _reconnect(make, level: int, **connect) -> tuple["RawMqtt", int]:
    """``make()``'s connection CONNECTed as soon as the client id's one-a-second allows it
    (a refusal, CONNACK 0x9F or a closed MQTT 3.1.1 connection, is retried within 15 s)."""
    import time

    deadline = time.monotonic() + 15
    while True:
        conn = make()
        try:
            code = conn.connect(level=level, **connect)[0]
        except ConnectionError:
            code = 0x9F
        if code != 0x9F:
            return conn, code
        conn.close()
        assert time.monotonic() < deadline, "the CONNECT stayed throttled"
        time.sleep(0.25)


@pytest.mark.parametrize("level, refused", [(5, 0x97), (4, 0x80)])
def test_a_resumed_session_still_holds_its_50_subscriptions(front, raw, level, refused):
    """The subscriptions of a persistent session are the session's: after a reconnect that
    resumes it the connection holds 50 already, and the 51st is refused; a new session starts
    from none."""
    dev, ident = raw()
    expiry = b"\x11" + struct.pack(">I", 600) if level == 5 else b""
    assert dev.connect(ident.thing_name, level=level, clean=False, props=expiry)[0] == 0
    filters = [f"dt/{ident.thing_name}/r{i}" for i in range(51)]
    granted = []
    for i in range(0, 50, 8):
        granted += dev.subscribe(filters[i:min(i + 8, 50)])
    assert granted == [1] * 50
    dev.close()

    def again():
        conn = RawMqtt(front, ident.certificate_pem, ident.private_key_pem)
        made.append(conn)
        return conn

    made: list[RawMqtt] = []
    try:
        resumed, code = _reconnect(lambda: again(), level, client_id=ident.thing_name, clean=False, props=expiry)
        assert code == 0 and resumed.session_present, "the broker did not resume the session"
        assert resumed.subscribe([filters[50]]) == [refused], "a resumed session's 51st subscription"
        assert resumed.subscribe(filters[:2]) == [1, 1], "its own filters are held, not new"
        resumed.close()
        fresh, code = _reconnect(lambda: again(), level, client_id=ident.thing_name)
        assert code == 0 and not fresh.session_present
        assert fresh.subscribe([filters[50]]) == [1], "a new session holds no subscriptions"
    finally:
        for conn in made:
            conn.close()
    counted(front, ident.thing_name, "SubscriptionsPerConnection", 1)


def test_wss_clients_are_under_the_same_quotas(front):
    """MQTT over WebSockets with SigV4 (how the app and scripts connect) is an ordinary client on
    AWS: 8 filters per SUBSCRIBE, 100 publishes/s in, one CONNECT a second per client id."""
    client_id = f"wss-{uuid.uuid4().hex[:10]}"
    made: list[RawMqtt] = []
    try:
        dev = RawMqtt.over_wss(front)
        made.append(dev)
        code, props = dev.connect(client_id, level=5, keep_alive=5)
        assert code == 0 and struct.unpack(">H", props[0x13])[0] == 30, props  # keep-alive raised to 30
        assert dev.subscribe([f"q/{client_id}/f{i}" for i in range(9)]) == [0x97] * 9
        second = RawMqtt.over_wss(front)
        made.append(second)
        assert second.connect(client_id, level=5)[0] == 0x9F  # Connection rate exceeded
        acked, dropped = _publish_150_at_once(front, dev, client_id, f"q/{client_id}/x")
        assert len(acked) >= 100 and dropped >= 1, (len(acked), dropped)
        dev.ping()
    finally:
        for conn in made:
            conn.close()
    counted(front, client_id, "TopicFiltersPerSubscribe", 1)
    counted(front, client_id, "ConnectPerSecondPerClientId", 1)


def test_a_resumed_sessions_stored_messages_all_arrive_paced_not_dropped(front, iot, raw):
    """IoT Core delivers a resumed persistent session's stored messages at 10 a second, none
    lost: 120 stored QoS 1 messages (more than a second's 100 outbound) all arrive, and nothing
    is counted as throttled for the subscriber."""
    try:
        iot.create_policy(policyName="quota-test-open", policyDocument=json.dumps(OPEN_POLICY))
    except iot.exceptions.ResourceAlreadyExistsException:
        pass
    sub, ident = raw("quota-test-open")
    topic = f"q/{uuid.uuid4().hex[:8]}"
    assert sub.connect(ident.thing_name, level=4, clean=False)[0] == 0
    assert sub.subscribe([f"{topic}/#"]) == [1]
    sub.close()  # offline: the broker stores what comes for the session
    for _ in range(2):
        p, pident = raw("quota-test-open")
        assert p.connect(pident.thing_name, level=4)[0] == 0
        p.sock.sendall(b"".join(p.publish_packet(f"{topic}/x", str(i).encode()) for i in range(60)))
        poll(lambda: throttled(front, pident.thing_name, "PublishInPerSecond") == 0 and p.ping() is None, timeout=10)
    made: list[RawMqtt] = []

    def again():
        conn = RawMqtt(front, ident.certificate_pem, ident.private_key_pem, timeout=30)
        made.append(conn)
        return conn

    try:
        back, code = _reconnect(again, 4, client_id=ident.thing_name, clean=False)
        assert code == 0 and back.session_present
        got = 0
        while got < 120:
            first, body = back.read()
            if first >> 4 == 3:
                got += 1
                pid = body[2 + struct.unpack_from(">H", body, 0)[0]:][:2]
                back.sock.sendall(b"\x40\x02" + pid)  # PUBACK
        assert throttled(front, ident.thing_name, "PublishOutPerSecond") == 0
    finally:
        for conn in made:
            conn.close()
