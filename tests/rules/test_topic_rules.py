"""The sandbox's rules engine: topic-rule API as AWS answers it, AWS IoT SQL, republish, dynamoDBv2,
errorAction and Basic Ingest, with a real mTLS device publishing."""

from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError
from helpers_sandbox import poll

ROLE = "arn:aws:iam::123456789012:role/fleetdesk-rules"
KEYS = dict(KeySchema=[{"AttributeName": "thing", "KeyType": "HASH"}, {"AttributeName": "ts", "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": "thing", "AttributeType": "S"},
                                  {"AttributeName": "ts", "AttributeType": "N"}],
            BillingMode="PAY_PER_REQUEST")


def code(exc) -> str:
    return exc.value.response["Error"]["Code"]


def rule(sql: str, *actions, error_action=None, disabled=False) -> dict:
    payload = {"sql": sql, "actions": list(actions), "awsIotSqlVersion": "2016-03-23", "ruleDisabled": disabled}
    if error_action:
        payload["errorAction"] = error_action
    return payload


def ddb(table: str) -> dict:
    return {"dynamoDBv2": {"roleArn": ROLE, "putItem": {"tableName": table}}}


def republish(topic: str) -> dict:
    return {"republish": {"roleArn": ROLE, "topic": topic, "qos": 1}}


def items(dynamodb, table: str, thing: str) -> list[dict]:
    return dynamodb.query(TableName=table, KeyConditionExpression="thing = :t",
                          ExpressionAttributeValues={":t": {"S": thing}})["Items"]


def test_rule_api_round_trip_and_refusals(iot):
    iot.create_topic_rule(ruleName="api_rule", topicRulePayload=rule("SELECT * FROM 'x/+/y'", republish("out/a")))
    got = iot.get_topic_rule(ruleName="api_rule")
    assert got["rule"]["sql"] == "SELECT * FROM 'x/+/y'" and got["ruleArn"].endswith(":rule/api_rule")
    listed = iot.list_topic_rules()["rules"]
    assert [(r["ruleName"], r["topicPattern"], r["ruleDisabled"]) for r in listed if r["ruleName"] == "api_rule"] == [
        ("api_rule", "x/+/y", False)]
    iot.disable_topic_rule(ruleName="api_rule")
    assert iot.get_topic_rule(ruleName="api_rule")["rule"]["ruleDisabled"] is True
    iot.replace_topic_rule(ruleName="api_rule", topicRulePayload=rule("SELECT a FROM 'z/#'", republish("out/b")))
    assert iot.get_topic_rule(ruleName="api_rule")["rule"]["sql"] == "SELECT a FROM 'z/#'"
    with pytest.raises(ClientError) as dup:
        iot.create_topic_rule(ruleName="api_rule", topicRulePayload=rule("SELECT * FROM 'a'", republish("b")))
    assert code(dup) == "ResourceAlreadyExistsException"
    with pytest.raises(ClientError) as bad_sql:
        iot.create_topic_rule(ruleName="bad_sql", topicRulePayload=rule("SELECT * FRM 'a'", republish("b")))
    assert code(bad_sql) == "SqlParseException"
    with pytest.raises(ClientError) as lam:
        iot.create_topic_rule(ruleName="lam", topicRulePayload=rule(
            "SELECT * FROM 'a'", {"lambda": {"functionArn": "arn:aws:lambda:us-east-1:1:function:f"}}))
    assert code(lam) == "InvalidRequestException" and "cannot run lambda" in str(lam.value)
    with pytest.raises(ClientError) as bad_name:
        iot.create_topic_rule(ruleName="has-dash", topicRulePayload=rule("SELECT * FROM 'a'", republish("b")))
    assert code(bad_name) == "InvalidRequestException"
    iot.delete_topic_rule(ruleName="api_rule")
    with pytest.raises(ClientError) as gone:
        iot.get_topic_rule(ruleName="api_rule")
    assert code(gone) == "UnauthorizedException"


def test_telemetry_rule_writes_dynamodb_and_republishes(iot, dynamodb, device):
    dynamodb.create_table(TableName="telemetry-t", **KEYS)
    iot.create_topic_rule(ruleName="telemetry", topicRulePayload=rule(
        "SELECT temp, temp * 1.8 + 32 AS temp_f, topic(2) AS thing, timestamp() AS ts FROM 'dt/+/env' "
        "WHERE temp > -40 AND temp < 125", ddb("telemetry-t"), republish("dt/${topic(2)}/seen")))
    device.subscribe("dt/rule-dev/seen")
    device.publish("dt/rule-dev/env", {"temp": 21.5, "rh": 40})
    seen = device.expect("dt/rule-dev/seen")
    assert seen["thing"] == "rule-dev" and seen["temp_f"] == pytest.approx(70.7) and "rh" not in seen
    row = poll(lambda: items(dynamodb, "telemetry-t", "rule-dev"))[0]
    assert row["temp"] == {"N": "21.5"} and int(row["ts"]["N"]) == seen["ts"]
    device.publish("dt/rule-dev/env", {"temp": 500})  # WHERE does not match: nothing written
    device.publish("dt/rule-dev/env", {"temp": 22})
    poll(lambda: len(items(dynamodb, "telemetry-t", "rule-dev")) == 2)
    assert sorted(float(i["temp"]["N"]) for i in items(dynamodb, "telemetry-t", "rule-dev")) == [21.5, 22.0]


def test_failed_action_runs_the_error_action(iot, device):
    iot.create_topic_rule(ruleName="broken", topicRulePayload=rule(
        "SELECT * FROM 'dt/+/broken'", ddb("no-such-table"), error_action=republish("dt/${topic(2)}/rule-errors")))
    device.subscribe("dt/rule-dev/rule-errors")
    device.publish("dt/rule-dev/broken", {"v": 1})
    report = device.expect("dt/rule-dev/rule-errors")
    assert report["ruleName"] == "broken" and report["topic"] == "dt/rule-dev/broken"
    assert report["failures"][0]["failedAction"] == "DynamoDBv2Action"
    assert report["failures"][0]["failedResource"] == "no-such-table"
    assert json.loads(__import__("base64").b64decode(report["base64OriginalPayload"])) == {"v": 1}


def test_disabled_rule_does_not_run_and_basic_ingest_triggers_only_its_rule(iot, data, dynamodb, device):
    dynamodb.create_table(TableName="ingest-t", **KEYS)
    iot.create_topic_rule(ruleName="ingest", topicRulePayload=rule(
        "SELECT topic(2) AS thing, timestamp() AS ts, n, topic() AS t FROM 'never/matches'", ddb("ingest-t")))
    data.publish(topic="$aws/rules/ingest/dt/bi-thing/env", qos=1, payload=json.dumps({"n": 7}))
    row = poll(lambda: items(dynamodb, "ingest-t", "bi-thing"))[0]
    assert row["n"] == {"N": "7"} and row["t"] == {"S": "dt/bi-thing/env"}  # the prefix is not part of topic()
    iot.disable_topic_rule(ruleName="ingest")
    data.publish(topic="$aws/rules/ingest/dt/bi-other/env", qos=1, payload=json.dumps({"n": 8}))
    iot.enable_topic_rule(ruleName="ingest")
    data.publish(topic="$aws/rules/ingest/dt/bi-third/env", qos=1, payload=json.dumps({"n": 9}))
    poll(lambda: items(dynamodb, "ingest-t", "bi-third"))
    assert items(dynamodb, "ingest-t", "bi-other") == []  # the message sent while disabled was not processed
