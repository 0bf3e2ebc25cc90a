"""Reserved topics as on AWS: nobody reaches mosquitto's $CONTROL tree, nobody but the service
publishes shadow/jobs/presence/provisioning replies (real boto3, awsiotsdk over mTLS and WSS, raw MQTT)."""

from __future__ import annotations

import json
import socket
import struct
import uuid
from pathlib import Path
from types import SimpleNamespace

import boto3
import pytest
from awscrt import mqtt5
from botocore.exceptions import ClientError
from helpers_sandbox import Mqtt5

pytestmark = pytest.mark.slow

ALLOWED = (mqtt5.PubackReasonCode.SUCCESS, mqtt5.PubackReasonCode.NO_MATCHING_SUBSCRIBERS)
DENIED = mqtt5.PubackReasonCode.NOT_AUTHORIZED


def _raw_login(port: int, username: str, password: str) -> int:
    """MQTT 3.1.1 CONNECT with a username/password on the internal listener; the CONNACK return code."""
    def field(text: str) -> bytes:
        return struct.pack("!H", len(text.encode())) + text.encode()

    body = field("MQTT") + bytes([4, 0xC2]) + struct.pack("!H", 10) + field(f"probe-{uuid.uuid4().hex[:6]}") \
        + field(username) + field(password)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"\x10" + bytes([len(body)]) + body)
        connack = s.recv(4)
    return connack[3]


def _internal_port(sandbox) -> int:
    return json.loads((Path(sandbox.state_dir) / "endpoint.json").read_text())["internal_port"]


def _permissive_device(iot, thing: str):
    """A thing whose certificate's policy allows iot:* on * and names $CONTROL explicitly."""
    iot.create_thing(thingName=thing)
    keys = iot.create_keys_and_certificate(setAsActive=True)
    arn = f"arn:aws:iot:{iot.meta.region_name}:*"
    doc = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "iot:*", "Resource": "*"},
        {"Effect": "Allow", "Action": ["iot:Publish", "iot:Receive"],
         "Resource": [f"{arn}:topic/$CONTROL/dynamic-security/v1"]},
        {"Effect": "Allow", "Action": "iot:Subscribe", "Resource": [f"{arn}:topicfilter/$CONTROL/*"]}]}
    policy = f"{thing}-all"
    iot.create_policy(policyName=policy, policyDocument=json.dumps(doc))
    iot.attach_policy(policyName=policy, target=keys["certificateArn"])
    iot.attach_thing_principal(thingName=thing, principal=keys["certificateArn"])
    return SimpleNamespace(thing_name=thing, certificate_pem=keys["certificatePem"],
                           private_key_pem=keys["keyPair"]["PrivateKey"])


def _create_client_command(username: str) -> bytes:
    return json.dumps({"commands": [
        {"command": "createClient", "username": username, "password": "pw123456"},
        {"command": "addClientRole", "username": username, "rolename": "fleetdesk-internal"}]}).encode()


def test_data_api_cannot_reach_the_broker_admin_topic(sandbox):
    data = boto3.client("iot-data", **sandbox.boto3_kwargs())
    user = f"evil-{uuid.uuid4().hex[:6]}"
    with pytest.raises(ClientError) as ei:
        data.publish(topic="$CONTROL/dynamic-security/v1", qos=1, payload=_create_client_command(user))
    assert ei.value.response["Error"]["Code"] == "ForbiddenException"
    assert _raw_login(_internal_port(sandbox), user, "pw123456") != 0  # no such broker user was made


@pytest.mark.parametrize("topic", [
    "$aws/things/{t}/shadow/update/delta", "$aws/things/{t}/shadow/get/accepted",
    "$aws/things/{t}/shadow/name/cfg/update/documents", "$aws/things/{t}/jobs/notify-next",
    "$aws/events/presence/connected/{t}", "$aws/provisioning-templates/tpl/provision/json/accepted"])
def test_data_api_cannot_forge_service_replies(sandbox, topic):
    data = boto3.client("iot-data", **sandbox.boto3_kwargs())
    with pytest.raises(ClientError) as ei:
        data.publish(topic=topic.format(t="victim"), payload=b'{"state": {"led": "on"}}', retain=True)
    assert ei.value.response["Error"]["Code"] == "ForbiddenException"


def test_data_api_cannot_retain_on_reserved_topics(sandbox):
    data = boto3.client("iot-data", **sandbox.boto3_kwargs())
    with pytest.raises(ClientError) as ei:
        data.publish(topic="$aws/things/victim/shadow/update", payload=b"{}", retain=True)
    assert ei.value.response["Error"]["Code"] == "InvalidRequestException"
    data.publish(topic="$aws/things/victim/shadow/update", payload=b'{"state": {"desired": {"a": 1}}}')
    data.publish(topic="dt/victim/last", payload=b"{}", retain=True)  # retained elsewhere is fine


def test_device_with_iot_star_cannot_touch_control_or_service_topics(sandbox, iot, devices):
    thing = f"rsv-{uuid.uuid4().hex[:8]}"
    dev = devices(sandbox, _permissive_device(iot, thing))
    assert dev.connect(), dev.failure
    assert dev.publish("$CONTROL/dynamic-security/v1", _create_client_command("evil-dev")) == DENIED
    assert dev.subscribe("$CONTROL/#") == mqtt5.SubackReasonCode.NOT_AUTHORIZED
    assert dev.subscribe("$CONTROL/dynamic-security/v1/response") == mqtt5.SubackReasonCode.NOT_AUTHORIZED
    for topic in (f"$aws/things/{thing}/shadow/update/delta", f"$aws/things/{thing}/shadow/update/accepted",
                  f"$aws/things/{thing}/jobs/notify", f"$aws/events/presence/connected/{thing}",
                  "$aws/certificates/create/json/accepted"):
        assert dev.publish(topic, b'{"state": {"led": "on"}}') == DENIED, topic
    # what a device does publish still works
    assert dev.publish(f"$aws/things/{thing}/shadow/update", b'{"state": {"reported": {"a": 1}}}') in ALLOWED
    assert _raw_login(_internal_port(sandbox), "evil-dev", "pw123456") != 0


def test_wss_app_client_cannot_reach_control(sandbox, iot):
    from awscrt import auth
    from awsiot import mqtt5_client_builder

    creds = auth.AwsCredentialsProvider.new_static(sandbox.aws_access_key_id, sandbox.aws_secret_access_key)

    def build(**callbacks):
        return mqtt5_client_builder.websockets_with_default_aws_signing(
            region=sandbox.region, credentials_provider=creds, endpoint="localhost", port=sandbox.ws_port,
            ca_bytes=Path(sandbox.ca_file).read_bytes(), client_id=f"app-{uuid.uuid4().hex[:6]}",
            clean_start=True, min_reconnect_delay_ms=5000, max_reconnect_delay_ms=10000, **callbacks)

    app = Mqtt5(build)
    try:
        assert app.connect(), app.failure
        assert app.publish("$CONTROL/dynamic-security/v1", _create_client_command("evil-wss")).puback.reason_code \
            == DENIED
        assert app.publish("$aws/things/victim/shadow/update/delta", b"{}").puback.reason_code == DENIED
        assert app.subscribe("$aws/things/+/shadow/update/delta") == mqtt5.SubackReasonCode.GRANTED_QOS_1
        assert app.publish("dt/victim/cmd", b"{}").puback.reason_code in ALLOWED
    finally:
        app.stop()
    assert _raw_login(_internal_port(sandbox), "evil-wss", "pw123456") != 0


def test_a_retained_shadow_request_is_not_replayed_after_a_broker_restart(tmp_path, devices):
    """A device retains an update on its own shadow/update topic: the shadow service applies it
    once, and when the broker restarts (the services resubscribe) it is cleared, not re-run."""
    import os
    import signal
    import time

    from fleetdesk.cloud.identity import create_device_identity
    from fleetdesk.sandbox.child import start_sandbox, stop_sandbox

    state = tmp_path / "state"
    proc, info = start_sandbox(state)
    try:
        iot = boto3.client("iot", **info.boto3_kwargs())
        data = boto3.client("iot-data", **info.boto3_kwargs())
        ident = create_device_identity(iot, "retainer")
        dev = devices(info, ident)
        assert dev.connect(), dev.failure
        topic = "$aws/things/retainer/shadow/update"
        dev.client.publish(mqtt5.PublishPacket(topic=topic, payload=b'{"state": {"reported": {"boot": 1}}}',
                                               qos=mqtt5.QoS.AT_LEAST_ONCE, retain=True)).result(10)
        deadline = time.monotonic() + 10
        while True:
            try:
                version = json.loads(data.get_thing_shadow(thingName="retainer")["payload"].read())["version"]
                break
            except data.exceptions.ResourceNotFoundException:
                assert time.monotonic() < deadline, "the update was never applied"
        assert version == 1
        dev.stop()
        pid = int((state / "broker" / "mosquitto.pid").read_text())
        os.kill(pid, signal.SIGTERM)  # a clean exit saves the retained message; the sandbox restarts it
        deadline = time.monotonic() + 20
        while "mosquitto restarted" not in (tmp_path / "state.log").read_text():
            assert time.monotonic() < deadline, "mosquitto was not restarted"
            time.sleep(0.1)
        # an MQTT update once the shadow service's link is subscribed again: the retained request
        # would have been replayed on that SUBSCRIBE, before this one is handled
        again = devices(info, ident)
        assert again.connect(timeout=30), again.failure
        assert again.subscribe(topic + "/accepted") == mqtt5.SubackReasonCode.GRANTED_QOS_1
        deadline = time.monotonic() + 20
        while True:
            again.publish(topic, b'{"state": {"reported": {"probe": 1}}}')
            try:
                reply = again.receive(timeout=2)
                break
            except Exception:  # noqa: BLE001 - queue.Empty: the service link is not back yet
                assert time.monotonic() < deadline, "the shadow service did not come back"
        assert json.loads(reply[1])["version"] == 2, "the retained request was applied again after the restart"
    finally:
        stop_sandbox(proc)
