"""Unit tests: AWS IoT policy -> mosquitto ACLs, iot:Connect checks, broker log parsing."""

from __future__ import annotations

import json

from fleetdesk.paths import RESOURCES_DIR
from fleetdesk.sandbox.broker import parse_log_line
from fleetdesk.sandbox.policy import aws_topic_to_mqtt, may_connect, topic_acls

THING_POLICY = json.loads((RESOURCES_DIR / "policies" / "thing-policy.json").read_text())


def test_thing_policy_acls_name_only_the_thing():
    acls = topic_acls([THING_POLICY], "dev1", "dev1")
    topics = {(a["acltype"], a["topic"]) for a in acls if a["allow"]}
    assert ("publishClientSend", "dt/dev1/#") in topics
    assert ("publishClientReceive", "$aws/things/dev1/#") in topics
    assert ("subscribePattern", "dev1/#") in topics
    assert all("dev1" in t for _, t in topics)


def test_wildcards_map_to_whole_levels_only():
    assert aws_topic_to_mqtt("a/*") == ["a/#"]
    assert aws_topic_to_mqtt("a/*/b") == ["a/+/b"]
    assert aws_topic_to_mqtt("*") == ["#", "$aws/#"]
    assert aws_topic_to_mqtt("a/b*") == []  # not expressible: refuse rather than over-grant


def test_deny_wins_and_client_id_variable():
    doc = {"Statement": [
        {"Effect": "Allow", "Action": "iot:*", "Resource": "arn:aws:iot:us-east-1:1:topic/${iot:ClientId}/*"},
        {"Effect": "Deny", "Action": "iot:Publish", "Resource": "arn:aws:iot:us-east-1:1:topic/${iot:ClientId}/admin"},
        {"Effect": "Allow", "Action": "iot:Connect", "Resource": "arn:aws:iot:us-east-1:1:client/sensor-*"},
        {"Effect": "Deny", "Action": "iot:Connect", "Resource": "arn:aws:iot:us-east-1:1:client/sensor-bad"},
    ]}
    acls = topic_acls([doc], None, "sensor-1")
    deny = [a for a in acls if not a["allow"]]
    assert deny == [{"acltype": "publishClientSend", "topic": "sensor-1/admin", "allow": False, "priority": 100}]
    assert may_connect([doc], None, "sensor-7")
    assert not may_connect([doc], None, "sensor-bad")
    assert not may_connect([doc], None, "other")


def test_thing_variable_without_a_thing_grants_nothing():
    assert topic_acls([THING_POLICY], None, "x") == []
    assert not may_connect([THING_POLICY], None, "x")
    assert may_connect([THING_POLICY], "x", "x")
    assert not may_connect([THING_POLICY], "x", "y")


def test_parse_mosquitto_connection_lines():
    rec = parse_log_line("New client connected from 127.0.0.1:4242 as thing-1 (p5, c1, k1200, u'fleetdesk-device-ab').")
    assert (rec.kind, rec.client_id, rec.identity, rec.address) == ("connected", "thing-1", "fleetdesk-device-ab",
                                                                    "127.0.0.1:4242")
    assert parse_log_line("Client thing-1 disconnected.").reason == "CLIENT_INITIATED_DISCONNECT"
    assert parse_log_line("Client thing-1 closed its connection.").reason == "CONNECTION_LOST"
    assert parse_log_line("Client thing-1 has exceeded timeout, disconnecting.").reason == "MQTT_KEEP_ALIVE_TIMEOUT"
    assert parse_log_line("Client thing-1 already connected, closing old connection.").reason == "DUPLICATE_CLIENTID"
    assert parse_log_line("Client <unknown> closed its connection.") is None
    assert parse_log_line("Opening ipv4 listen socket on port 1883.") is None


def test_conditions_isattached_understood_others_ignored():
    attached = {"Effect": "Allow", "Action": "iot:Connect", "Resource": "*",
                "Condition": {"Bool": {"iot:Connection.Thing.IsAttached": "true"}}}
    odd = {"Effect": "Allow", "Action": "iot:Publish", "Resource": "arn:aws:iot:*:*:topic/x",
           "Condition": {"StringEquals": {"iot:Connection.Thing.ThingTypeName": "t"}}}
    doc = {"Statement": [attached, odd]}
    assert may_connect([doc], "dev1", "dev1")
    assert not may_connect([doc], None, "dev1")  # not attached to a thing
    assert topic_acls([doc], "dev1", "dev1") == []  # the unknown condition grants nothing


def test_thing_type_and_attribute_variables():
    doc = {"Statement": [{"Effect": "Allow", "Action": ["iot:Publish", "iot:Subscribe"], "Resource": [
        "arn:aws:iot:*:*:topic/site/${iot:Connection.Thing.Attributes[site]}/*",
        "arn:aws:iot:*:*:topicfilter/type/${iot:Connection.Thing.ThingTypeName}/*"]}]}
    acls = topic_acls([doc], "dev1", "dev1", {"type": "dht", "attributes": {"site": "berlin"}})
    assert {(a["acltype"], a["topic"]) for a in acls} == {("publishClientSend", "site/berlin/#"),
                                                          ("subscribePattern", "type/dht/#")}
    assert topic_acls([doc], "dev1", "dev1", {"type": None, "attributes": {}}) == []
