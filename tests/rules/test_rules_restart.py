"""Rules and DynamoDB tables (with their items and TTL setting) survive a sandbox restart."""

from __future__ import annotations

import json


def test_rules_and_tables_survive_restart(tmp_path):
    import boto3
    from helpers_sandbox import poll

    from fleetdesk.sandbox.child import start_sandbox, stop_sandbox

    keys = dict(KeySchema=[{"AttributeName": "thing", "KeyType": "HASH"}, {"AttributeName": "ts", "KeyType": "RANGE"}],
                AttributeDefinitions=[{"AttributeName": "thing", "AttributeType": "S"},
                                      {"AttributeName": "ts", "AttributeType": "N"}], BillingMode="PAY_PER_REQUEST")
    state = tmp_path / "state"
    proc, info = start_sandbox(state)
    try:
        db = boto3.client("dynamodb", **info.boto3_kwargs())
        iot = boto3.client("iot", **info.boto3_kwargs())
        db.create_table(TableName="kept", **keys)
        db.update_time_to_live(TableName="kept", TimeToLiveSpecification={"Enabled": True, "AttributeName": "exp"})
        db.put_item(TableName="kept", Item={"thing": {"S": "a"}, "ts": {"N": "1"}})
        iot.create_topic_rule(ruleName="kept_rule", topicRulePayload={
            "sql": "SELECT topic(2) AS thing, timestamp() AS ts FROM 'dt/+/env'", "actions": [
                {"dynamoDBv2": {"roleArn": "arn:aws:iam::1:role/r", "putItem": {"tableName": "kept"}}}]})
    finally:
        stop_sandbox(proc)
    proc, info = start_sandbox(state)
    try:
        db = boto3.client("dynamodb", **info.boto3_kwargs())
        data = boto3.client("iot-data", **info.boto3_kwargs())
        assert db.describe_time_to_live(TableName="kept")["TimeToLiveDescription"]["TimeToLiveStatus"] == "ENABLED"
        assert db.get_item(TableName="kept", Key={"thing": {"S": "a"}, "ts": {"N": "1"}})["Item"]
        data.publish(topic="dt/after/env", qos=1, payload=json.dumps({"x": 1}))
        poll(lambda: db.query(TableName="kept", KeyConditionExpression="thing = :t",
                              ExpressionAttributeValues={":t": {"S": "after"}})["Count"] == 1)
    finally:
        stop_sandbox(proc)
