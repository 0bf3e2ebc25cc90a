"""Real boto3 + awsiotsdk MQTT5 against a running sandbox: identity, topics, client id, revocation."""

from __future__ import annotations

import json
import time

import pytest
from awscrt import mqtt5

from fleetdesk.cloud.identity import create_device_identity

pytestmark = pytest.mark.slow

# mosquitto answers 16 (no matching subscribers) where AWS says 0: both mean "allowed".
ALLOWED = (mqtt5.PubackReasonCode.SUCCESS, mqtt5.PubackReasonCode.NO_MATCHING_SUBSCRIBERS)


def test_thing_publishes_and_receives_on_its_own_topics(sandbox, iot, thing_name, devices):
    ident = create_device_identity(iot, thing_name)
    dev = devices(sandbox, ident)
    assert dev.connect(), dev.failure
    # CONNACK limits as AWS IoT Core advertises them
    assert dev.settings.maximum_qos == mqtt5.QoS.AT_LEAST_ONCE
    # (topic alias maximum: 8 as configured, but mosquitto 2.0.11 falls back to 10 after a SIGHUP reload)
    assert dev.settings.maximum_packet_size_to_server == 149504
    assert dev.subscribe(f"dt/{thing_name}/#") == mqtt5.SubackReasonCode.GRANTED_QOS_1
    assert dev.publish(f"dt/{thing_name}/env", b'{"temperature": 21}') == mqtt5.PubackReasonCode.SUCCESS
    assert dev.receive() == (f"dt/{thing_name}/env", b'{"temperature": 21}')
    assert dev.subscribe(f"$aws/things/{thing_name}/shadow/update/accepted") == mqtt5.SubackReasonCode.GRANTED_QOS_1
    assert dev.publish(f"{thing_name}/rpc/resp", b"{}") in ALLOWED


def test_other_things_topics_are_refused(sandbox, iot, thing_name, devices):
    ident = create_device_identity(iot, thing_name)
    other = create_device_identity(iot, thing_name + "-other")
    dev = devices(sandbox, ident)
    assert dev.connect(), dev.failure
    assert dev.publish(f"dt/{other.thing_name}/env") == mqtt5.PubackReasonCode.NOT_AUTHORIZED
    assert dev.publish(f"$aws/things/{other.thing_name}/shadow/update") == mqtt5.PubackReasonCode.NOT_AUTHORIZED
    assert dev.subscribe(f"dt/{other.thing_name}/#") == mqtt5.SubackReasonCode.NOT_AUTHORIZED
    assert dev.subscribe("#") == mqtt5.SubackReasonCode.NOT_AUTHORIZED


def test_wrong_client_id_is_refused_at_connect(sandbox, iot, thing_name, devices):
    ident = create_device_identity(iot, thing_name)
    owner = devices(sandbox, ident)
    assert owner.connect(), owner.failure
    for other in (thing_name + "-impostor", "someone-else"):
        dev = devices(sandbox, ident, client_id=other)
        assert dev.connect() is False, f"client id {other!r} was accepted"
        assert "CONNACK" in str(dev.failure), dev.failure
    assert not owner.disconnected.is_set(), "a refused CONNECT kicked the thing's own session"
    assert owner.publish(f"dt/{thing_name}/env") in ALLOWED


def test_inactive_certificate_cannot_connect_and_live_one_is_dropped(sandbox, iot, thing_name, devices):
    ident = create_device_identity(iot, thing_name)
    live = devices(sandbox, ident)
    assert live.connect(), live.failure
    t0 = time.monotonic()
    iot.update_certificate(certificateId=ident.certificate_id, newStatus="INACTIVE")
    assert live.disconnected.wait(2.0), "the live connection was not dropped within 2 s"
    assert live.disconnected_at - t0 < 2.0
    fresh = devices(sandbox, ident)
    assert fresh.connect() is False
    assert fresh.failure_code == 135, (fresh.failure, fresh.failure_code)  # CONNACK Not authorized, as IoT Core
    # re-activating lets it back in
    iot.update_certificate(certificateId=ident.certificate_id, newStatus="ACTIVE")
    again = devices(sandbox, ident)
    assert again.connect(), again.failure
    assert again.publish(f"dt/{thing_name}/env") in ALLOWED


def test_policy_changes_apply(sandbox, iot, thing_name, devices):
    """Rights follow policy changes. (mosquitto's dynamic security drops a live connection whose
    rights change; awsiotsdk reconnects by itself. AWS keeps it: a documented difference.)"""
    ident = create_device_identity(iot, thing_name)
    group = f"{thing_name}-g"
    arn = iot.create_thing_group(thingGroupName=group)["thingGroupArn"]
    extra = f"{thing_name}-extra"
    iot.create_policy(policyName=extra, policyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "iot:Publish", "Resource": "arn:aws:iot:*:*:topic/factory/announcements"}]}))
    iot.attach_policy(policyName=extra, target=arn)
    dev = devices(sandbox, ident)
    assert dev.connect(), dev.failure
    assert dev.publish("factory/announcements") == mqtt5.PubackReasonCode.NOT_AUTHORIZED
    dev.stop()
    # a policy on the thing's group applies to the thing's connections
    iot.add_thing_to_thing_group(thingGroupName=group, thingName=thing_name)
    dev = devices(sandbox, ident)
    assert dev.connect(), dev.failure
    assert dev.publish("factory/announcements") in ALLOWED
    assert dev.publish(f"dt/{thing_name}/env") in ALLOWED
    # detaching the thing policy takes its rights away (and with it iot:Connect)
    iot.detach_policy(policyName="fleetdesk-thing-policy", target=ident.certificate_arn)
    assert dev.disconnected.wait(3)
    again = devices(sandbox, ident)
    assert again.connect() is False, "connected without iot:Connect"
    assert "CONNACK" in str(again.failure), again.failure


def test_deleted_certificate_is_refused(sandbox, iot, thing_name, devices):
    ident = create_device_identity(iot, thing_name)
    iot.update_certificate(certificateId=ident.certificate_id, newStatus="REVOKED")
    iot.detach_thing_principal(thingName=thing_name, principal=ident.certificate_arn)
    iot.delete_certificate(certificateId=ident.certificate_id, forceDelete=True)
    assert devices(sandbox, ident).connect() is False


def test_policy_versions_switch_rights(sandbox, iot, thing_name, devices):
    """A new default policy version is what the broker enforces (old versions stay listable)."""
    policy = f"{thing_name}-versioned"
    v1 = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "iot:Connect", "Resource": "arn:aws:iot:*:*:client/${iot:Connection.Thing.ThingName}"},
        {"Effect": "Allow", "Action": "iot:Publish", "Resource": "arn:aws:iot:*:*:topic/v1/${iot:Connection.Thing.ThingName}"}]}
    v2 = {"Version": "2012-10-17", "Statement": [v1["Statement"][0],
        {"Effect": "Allow", "Action": "iot:Publish", "Resource": "arn:aws:iot:*:*:topic/v2/${iot:Connection.Thing.ThingName}"}]}
    iot.create_policy(policyName=policy, policyDocument=json.dumps(v1))
    ident = create_device_identity(iot, thing_name, policy_name=policy)
    out = iot.create_policy_version(policyName=policy, policyDocument=json.dumps(v2), setAsDefault=False)
    assert out["policyVersionId"] == "2" and not out["isDefaultVersion"]
    dev = devices(sandbox, ident)
    assert dev.connect(), dev.failure
    assert dev.publish(f"v1/{thing_name}") in ALLOWED
    assert dev.publish(f"v2/{thing_name}") == mqtt5.PubackReasonCode.NOT_AUTHORIZED
    dev.stop()
    iot.set_default_policy_version(policyName=policy, policyVersionId="2")
    assert [v["isDefaultVersion"] for v in iot.list_policy_versions(policyName=policy)["policyVersions"]] == [True, False]
    assert json.loads(iot.get_policy(policyName=policy)["policyDocument"]) == v2
    dev = devices(sandbox, ident)
    assert dev.connect(), dev.failure
    assert dev.publish(f"v2/{thing_name}") in ALLOWED
    assert dev.publish(f"v1/{thing_name}") == mqtt5.PubackReasonCode.NOT_AUTHORIZED
    with pytest.raises(Exception) as ei:
        iot.delete_policy_version(policyName=policy, policyVersionId="2")
    assert ei.value.response["Error"]["Code"] == "DeleteConflictException"
    iot.delete_policy_version(policyName=policy, policyVersionId="1")


def test_thing_attribute_policy_variable_follows_update_thing(sandbox, iot, thing_name, devices):
    policy = f"{thing_name}-site"
    iot.create_policy(policyName=policy, policyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "iot:Connect", "Resource": "arn:aws:iot:*:*:client/${iot:Connection.Thing.ThingName}"},
        {"Effect": "Allow", "Action": "iot:Publish",
         "Resource": "arn:aws:iot:*:*:topic/site/${iot:Connection.Thing.Attributes[site]}/*"}]}))
    ident = create_device_identity(iot, thing_name, policy_name=policy, attributes={"site": "berlin"})
    dev = devices(sandbox, ident)
    assert dev.connect(), dev.failure
    assert dev.publish("site/berlin/alarm") in ALLOWED
    assert dev.publish("site/paris/alarm") == mqtt5.PubackReasonCode.NOT_AUTHORIZED
    dev.stop()
    iot.update_thing(thingName=thing_name, attributePayload={"attributes": {"site": "paris"}, "merge": True})
    dev = devices(sandbox, ident)
    assert dev.connect(), dev.failure
    assert dev.publish("site/paris/alarm") in ALLOWED
    assert dev.publish("site/berlin/alarm") == mqtt5.PubackReasonCode.NOT_AUTHORIZED
