"""The mTLS front (FLEETDESK_SANDBOX_FRONT=1) with real awsiotsdk devices and boto3: a client id
the certificate may not use is refused at CONNECT without touching the session that holds it, a
legitimate reconnect takes over, and just-in-time provisioning of a registered line CA's
certificate works as on AWS (first connection dropped, reconnect in); unregistered and INACTIVE
CAs are refused."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest
from awscrt import mqtt5
from helpers_sandbox import Mqtt5, mtls_builder, poll

from fleetdesk.boards.line_ca import LineCA
from fleetdesk.cloud.identity import create_device_identity

pytestmark = pytest.mark.slow

ALLOWED = (mqtt5.PubackReasonCode.SUCCESS, mqtt5.PubackReasonCode.NO_MATCHING_SUBSCRIBERS)
POLICY = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": "iot:Connect",
     "Resource": "arn:aws:iot:*:*:client/${iot:Connection.Thing.ThingName}"},
    {"Effect": "Allow", "Action": ["iot:Publish", "iot:Receive"],
     "Resource": "arn:aws:iot:*:*:topic/dt/${iot:Connection.Thing.ThingName}/*"},
    {"Effect": "Allow", "Action": "iot:Subscribe",
     "Resource": "arn:aws:iot:*:*:topicfilter/dt/${iot:Connection.Thing.ThingName}/*"}]}


@pytest.fixture(scope="module")
def front(tmp_path_factory):
    """A sandbox with the mTLS front on the device port."""
    from fleetdesk.sandbox.child import start_sandbox, stop_sandbox

    state_dir = tmp_path_factory.mktemp("front") / "state"
    proc, info = start_sandbox(state_dir, env={**os.environ, "FLEETDESK_SANDBOX_FRONT": "1"})
    try:
        yield info
    finally:
        stop_sandbox(proc)


@pytest.fixture
def iot(front):
    import boto3

    return boto3.client("iot", **front.boto3_kwargs())


@pytest.fixture
def clients():
    made: list[Mqtt5] = []

    def make(info, cert_pem: str, key_pem: str, client_id: str) -> Mqtt5:
        disconnected = []
        build = mtls_builder(info, cert_pem, key_pem, client_id)
        dev = Mqtt5(lambda **cb: build(on_lifecycle_disconnection=lambda d: disconnected.append(d), **cb))
        dev.disconnections = disconnected
        made.append(dev)
        return dev

    yield make
    for dev in made:
        dev.stop()


def test_other_things_certificate_with_my_client_id_is_refused_and_i_stay(front, iot, clients):
    a = create_device_identity(iot, f"a-{uuid.uuid4().hex[:8]}")
    b = create_device_identity(iot, f"b-{uuid.uuid4().hex[:8]}")
    real_b = clients(front, b.certificate_pem, b.private_key_pem, b.thing_name)
    assert real_b.connect(), real_b.failure
    impostor = clients(front, a.certificate_pem, a.private_key_pem, b.thing_name)
    assert impostor.connect() is False, "thing A's certificate got in with thing B's client id"
    assert "NOT_AUTHORIZED" in repr(impostor.failure) or "0x87" in repr(impostor.failure).lower() \
        or "CONNACK" in repr(impostor.failure).upper(), impostor.failure
    impostor.stop()
    # B was never touched: still connected, still publishing, no disconnection seen
    assert real_b.client.publish(mqtt5.PublishPacket(topic=f"dt/{b.thing_name}/env", payload=b"{}",
                                                     qos=mqtt5.QoS.AT_LEAST_ONCE)).result(10).puback.reason_code \
        in ALLOWED
    assert real_b.disconnections == []


def test_same_certificate_and_client_id_takes_the_session_over(front, iot, clients):
    ident = create_device_identity(iot, f"t-{uuid.uuid4().hex[:8]}")
    first = clients(front, ident.certificate_pem, ident.private_key_pem, ident.thing_name)
    assert first.connect(), first.failure
    second = clients(front, ident.certificate_pem, ident.private_key_pem, ident.thing_name)
    assert second.connect(), second.failure
    poll(lambda: first.disconnections, timeout=10)
    assert second.publish(f"dt/{ident.thing_name}/env", b"{}").puback.reason_code in ALLOWED


def _registered_events(front) -> Mqtt5:
    """An app client (SigV4 over WSS) listening to the certificate-registered events."""
    from awscrt import auth
    from awsiot import mqtt5_client_builder

    creds = auth.AwsCredentialsProvider.new_static(front.aws_access_key_id, front.aws_secret_access_key)
    app = Mqtt5(lambda **cb: mqtt5_client_builder.websockets_with_default_aws_signing(
        endpoint="localhost", port=front.ws_port, ca_bytes=Path(front.ca_file).read_bytes(),
        client_id=f"app-{uuid.uuid4().hex[:6]}", clean_start=True, region=front.region,
        credentials_provider=creds, **cb))
    assert app.connect(), app.failure
    assert app.subscribe("$aws/events/certificates/registered/+") < 128
    return app


def test_jitp_first_connection_dropped_then_thing_and_reconnect(front, iot, clients, tmp_path):
    policy = f"jitp-{uuid.uuid4().hex[:6]}"
    iot.create_policy(policyName=policy, policyDocument=json.dumps(POLICY))
    ca = LineCA(tmp_path / "line-ca")
    ca.create()
    ca_id = ca.register(iot, policy=policy)
    app = _registered_events(front)
    try:
        thing = f"fd-line-{uuid.uuid4().hex[:6]}"
        board = ca.sign_device(thing)
        first = clients(front, board.chain_pem, board.private_key_pem, thing)
        assert first.connect() is False, "the first connection of a new certificate is dropped"
        first.stop()
        topic, payload = app.messages.get(timeout=10)
        event = json.loads(payload)
        assert topic == f"$aws/events/certificates/registered/{ca_id}"
        assert event["caCertificateId"] == ca_id and event["certificateStatus"] == "PENDING_ACTIVATION"
        cert_id = event["certificateId"]
        desc = iot.describe_certificate(certificateId=cert_id)["certificateDescription"]
        assert desc["status"] == "ACTIVE" and desc["caCertificateId"] == ca_id  # as AWS names the signing CA
        assert iot.describe_thing(thingName=thing)["attributes"] == {"provisioned": "jitp"}
        assert iot.list_thing_principals(thingName=thing)["principals"][0].endswith(cert_id)
        again = clients(front, board.chain_pem, board.private_key_pem, thing)
        assert again.connect(), again.failure
        assert again.publish(f"dt/{thing}/env", b"{}").puback.reason_code in ALLOWED
        assert again.publish("dt/someone-else/env", b"{}").puback.reason_code == \
            mqtt5.PubackReasonCode.NOT_AUTHORIZED
    finally:
        app.stop()


def test_unregistered_and_inactive_cas_are_refused(front, iot, clients, tmp_path):
    stranger = LineCA(tmp_path / "stranger")
    stranger.create()
    board = stranger.sign_device(f"fd-x-{uuid.uuid4().hex[:6]}")
    dev = clients(front, board.chain_pem, board.private_key_pem, board.thing)
    assert dev.connect() is False, "a certificate of an unregistered CA got in"

    iot.create_policy(policyName=(policy := f"jitp-{uuid.uuid4().hex[:6]}"), policyDocument=json.dumps(POLICY))
    ca = LineCA(tmp_path / "inactive")
    ca.create()
    ca_id = ca.register(iot, policy=policy)
    iot.update_ca_certificate(certificateId=ca_id, newStatus="INACTIVE")
    board = ca.sign_device(f"fd-y-{uuid.uuid4().hex[:6]}")
    for _ in range(2):  # no JITP on the first try, nothing on the second
        dev = clients(front, board.chain_pem, board.private_key_pem, board.thing)
        assert dev.connect() is False, "a certificate of an INACTIVE CA got in"
        dev.stop()
    with pytest.raises(iot.exceptions.ResourceNotFoundException):
        iot.describe_thing(thingName=board.thing)


def test_revocation_drops_a_live_connection_through_the_front(front, iot, clients):
    ident = create_device_identity(iot, f"r-{uuid.uuid4().hex[:8]}")
    dev = clients(front, ident.certificate_pem, ident.private_key_pem, ident.thing_name)
    assert dev.connect(), dev.failure
    iot.update_certificate(certificateId=ident.certificate_id, newStatus="REVOKED")
    poll(lambda: dev.disconnections, timeout=5)
    fresh = clients(front, ident.certificate_pem, ident.private_key_pem, ident.thing_name)
    assert fresh.connect() is False




def _raw_connect(front, ident, client_id: str, level: int = 4):
    """A raw TLS socket (TLS verified) sending one CONNECT; returns (socket, first 5 bytes back)."""
    import socket
    import ssl
    import struct
    import tempfile

    ctx = ssl.create_default_context(cafile=front.ca_file)
    with tempfile.TemporaryDirectory() as d:
        cert, key = Path(d) / "c.pem", Path(d) / "k.pem"
        cert.write_text(ident.certificate_pem)
        key.write_text(ident.private_key_pem)
        key.chmod(0o600)
        ctx.load_cert_chain(str(cert), str(key))
    sock = ctx.wrap_socket(socket.create_connection((front.mqtt_host, front.mqtt_port), timeout=10),
                           server_hostname="localhost")

    def field(text: str) -> bytes:
        return struct.pack(">H", len(text)) + text.encode()

    body = field("MQTT") + bytes([level, 0x02]) + struct.pack(">H", 30) + (b"\x00" if level == 5 else b"") \
        + field(client_id)
    sock.sendall(bytes([0x10, len(body)]) + body)
    return sock, sock.recv(5)


@pytest.mark.parametrize("level, refused", [(4, b"\x20\x02\x00\x05"), (5, b"\x20\x03\x00\x87\x00")])
def test_raw_connack_not_authorized_and_presence_names_the_device_address(front, iot, level, refused):
    ident = create_device_identity(iot, f"w-{uuid.uuid4().hex[:8]}")
    bad, answer = _raw_connect(front, ident, "not-my-thing", level)
    bad.close()
    assert answer == refused
    good, answer = _raw_connect(front, ident, ident.thing_name, level)
    try:
        assert answer[0] == 0x20 and answer[3] == 0, answer  # CONNACK, accepted
        port = good.getsockname()[1]
        seen = poll(lambda: (c := iot.get_thing_connectivity_data(thingName=ident.thing_name))["connected"] and c)
        assert (seen["sourceIp"], seen["sourcePort"]) == ("127.0.0.1", port), seen
    finally:
        good.close()


def test_mosquitto_serves_devices_itself_only_without_the_front(tmp_path):
    from fleetdesk.sandbox.broker import BrokerConfig

    def conf(device_listener: bool) -> str:
        return BrokerConfig(tmp_path, 1, 2, 3, tmp_path / "ca", tmp_path / "c", tmp_path / "k", tmp_path / "crl",
                            tmp_path / "d.json", device_listener=device_listener).render("/x/dynsec.so")

    front, own = conf(False), conf(True)
    assert "listener 1 " not in front and "use_identity_as_username" not in front
    assert "listener 3 127.0.0.1\nmax_qos 1\nmax_topic_alias 8" in front  # what devices are offered, via the front
    assert "listener 1 127.0.0.1" in own and "require_certificate true" in own
