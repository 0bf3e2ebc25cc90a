"""Presence events and GetThingConnectivityData agree on connect, disconnect, kill and keep-alive timeout."""

from __future__ import annotations

import socket
import ssl
import struct
import time

import pytest

from fleetdesk.cloud.identity import create_device_identity

from .conftest import mtls_builder

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    """A sandbox whose keep-alive floor is lowered to 1 s (IoT Core raises anything under 30 s to
    30, so a keep-alive timeout would take 45 s): this module tests presence, not that quota."""
    import os

    from fleetdesk.sandbox.child import start_sandbox, stop_sandbox

    env = {**os.environ, "FLEETDESK_SANDBOX_QUOTAS": "KeepAliveMin=off"}
    proc, info = start_sandbox(tmp_path_factory.mktemp("presence") / "state", env=env)
    try:
        yield info
    finally:
        stop_sandbox(proc)


@pytest.fixture(scope="module")
def iot(sandbox):
    import boto3

    return boto3.client("iot", **sandbox.boto3_kwargs())


def _raw_connect(info, ident, tmp_path, keepalive: int) -> ssl.SSLSocket:
    """A bare MQTT 3.1.1 client over mTLS: CONNECT, wait for CONNACK, then do nothing.

    A CONNECT closed without a CONNACK (IoT Core's 1 CONNECT a second per client id, e.g. right
    after the previous connection) is retried, as a device's back-off does."""
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_text(ident.certificate_pem)
    key.write_text(ident.private_key_pem)
    ctx = ssl.create_default_context(cafile=info.ca_file)
    ctx.load_cert_chain(cert, key)
    deadline = time.monotonic() + 15
    while True:
        sock = ctx.wrap_socket(socket.create_connection((info.mqtt_host, info.mqtt_port), timeout=10),
                               server_hostname=info.mqtt_host)
        cid = ident.thing_name.encode()
        var = b"\x00\x04MQTT\x04\x02" + struct.pack(">H", keepalive)
        body = var + struct.pack(">H", len(cid)) + cid
        sock.sendall(bytes([0x10, len(body)]) + body)
        answer = sock.recv(4)
        if answer or time.monotonic() > deadline:
            assert answer[:2] == b"\x20\x02", answer
            return sock
        sock.close()
        time.sleep(0.25)  # the device's retry back-off (the deadline bounds the wait)


DEVICE_SCRIPT = """
import socket, ssl, struct, sys, time
host, port, ca, cert, key, cid = sys.argv[1:7]
ctx = ssl.create_default_context(cafile=ca)
ctx.load_cert_chain(cert, key)
s = ctx.wrap_socket(socket.create_connection((host, int(port)), timeout=10), server_hostname=host)
body = b"\\x00\\x04MQTT\\x04\\x02" + struct.pack(">H", 60) + struct.pack(">H", len(cid)) + cid.encode()
s.sendall(bytes([0x10, len(body)]) + body)
assert s.recv(4)[:2] == b"\\x20\\x02"
print("up", flush=True)
time.sleep(120)
"""


def _killable_device(info, ident, tmp_path):
    """A device in its own process (connected over mTLS) that the test can SIGKILL."""
    import subprocess
    import sys

    cert, key = tmp_path / "kc.pem", tmp_path / "kk.pem"
    cert.write_text(ident.certificate_pem)
    key.write_text(ident.private_key_pem)
    child = subprocess.Popen([sys.executable, "-c", DEVICE_SCRIPT, info.mqtt_host, str(info.mqtt_port), info.ca_file,
                              str(cert), str(key), ident.thing_name], stdout=subprocess.PIPE, text=True)
    line = child.stdout.readline()
    if line.strip() != "up":
        child.kill()
        child.wait(10)
        raise AssertionError("device process did not connect")
    return child


def _connectivity(iot, thing, connected, timeout=10.0):
    end = time.monotonic() + timeout
    while True:
        c = iot.get_thing_connectivity_data(thingName=thing)
        if c["connected"] is connected or time.monotonic() > end:
            return c
        time.sleep(0.1)


def test_connect_and_clean_disconnect(sandbox, iot, thing_name, clients, observer):
    obs = observer(["$aws/events/presence/connected/+", "$aws/events/presence/disconnected/+"])
    ident = create_device_identity(iot, thing_name)
    assert iot.get_thing_connectivity_data(thingName=thing_name)["connected"] is False
    dev = clients(mtls_builder(sandbox, ident.certificate_pem, ident.private_key_pem, thing_name))
    assert dev.connect()
    ev = obs.expect(f"$aws/events/presence/connected/{thing_name}")
    assert ev["eventType"] == "connected" and ev["clientId"] == thing_name
    assert ev["principalIdentifier"] == ident.certificate_id
    assert isinstance(ev["timestamp"], int) and ev["timestamp"] > 1e12  # milliseconds
    assert ev["versionNumber"] >= 1 and ev["sessionIdentifier"]
    c = _connectivity(iot, thing_name, True)
    assert c["connected"] is True
    dev.stop()
    gone = obs.expect(f"$aws/events/presence/disconnected/{thing_name}")
    assert gone["disconnectReason"] == "CLIENT_INITIATED_DISCONNECT" and gone["clientInitiatedDisconnect"] is True
    assert gone["sessionIdentifier"] == ev["sessionIdentifier"] and gone["versionNumber"] == ev["versionNumber"]
    c = _connectivity(iot, thing_name, False)
    assert c["connected"] is False and c["disconnectReason"] == "CLIENT_INITIATED_DISCONNECT"


def test_killed_client_and_keepalive_timeout(sandbox, iot, thing_name, observer, tmp_path):
    obs = observer(["$aws/events/presence/connected/+", "$aws/events/presence/disconnected/+"])
    ident = create_device_identity(iot, thing_name)

    child = _killable_device(sandbox, ident, tmp_path)
    try:
        first = obs.expect(f"$aws/events/presence/connected/{thing_name}")
        assert _connectivity(iot, thing_name, True)["connected"] is True
    finally:
        child.kill()  # SIGKILL: no DISCONNECT packet, the kernel closes the socket
        child.wait(10)
    lost = obs.expect(f"$aws/events/presence/disconnected/{thing_name}")
    assert lost["disconnectReason"] == "CONNECTION_LOST" and lost["clientInitiatedDisconnect"] is False
    assert _connectivity(iot, thing_name, False)["disconnectReason"] == "CONNECTION_LOST"

    sock = _raw_connect(sandbox, ident, tmp_path, keepalive=1)  # then never pings: the broker times it out
    second = obs.expect(f"$aws/events/presence/connected/{thing_name}")
    assert second["versionNumber"] == first["versionNumber"] + 1
    assert _connectivity(iot, thing_name, True)["connected"] is True
    timed_out = obs.expect(f"$aws/events/presence/disconnected/{thing_name}", timeout=10)
    sock.close()
    assert timed_out["disconnectReason"] == "MQTT_KEEP_ALIVE_TIMEOUT"
    assert _connectivity(iot, thing_name, False)["disconnectReason"] == "MQTT_KEEP_ALIVE_TIMEOUT"


def test_unknown_thing_connectivity_is_not_found(iot):
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError) as e:
        iot.get_thing_connectivity_data(thingName="no-such-thing-xyz")
    assert e.value.response["Error"]["Code"] == "ResourceNotFoundException"
