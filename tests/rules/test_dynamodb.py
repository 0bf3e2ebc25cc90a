"""The sandbox's DynamoDB subset, driven by boto3's dynamodb client unchanged."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

KEYS = dict(KeySchema=[{"AttributeName": "thing", "KeyType": "HASH"}, {"AttributeName": "ts", "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": "thing", "AttributeType": "S"},
                                  {"AttributeName": "ts", "AttributeType": "N"}],
            BillingMode="PAY_PER_REQUEST")


def code(exc) -> str:
    return exc.value.response["Error"]["Code"]


@pytest.fixture(scope="module")
def table(dynamodb):
    dynamodb.create_table(TableName="history", **KEYS)
    dynamodb.get_waiter("table_exists").wait(TableName="history", WaiterConfig={"Delay": 1, "MaxAttempts": 5})
    for chunk in range(4):
        dynamodb.batch_write_item(RequestItems={"history": [
            {"PutRequest": {"Item": {"thing": {"S": "a"}, "ts": {"N": str(1000 + chunk * 25 + i)},
                                     "temp": {"N": str(20 + (chunk * 25 + i) / 10)}}}} for i in range(25)]})
    dynamodb.put_item(TableName="history", Item={"thing": {"S": "b"}, "ts": {"N": "5"}, "temp": {"N": "1"}})
    return "history"


def test_table_is_described_and_listed(dynamodb, table):
    t = dynamodb.describe_table(TableName=table)["Table"]
    assert t["TableStatus"] == "ACTIVE" and t["ItemCount"] == 101 and t["KeySchema"] == KEYS["KeySchema"]
    assert table in dynamodb.list_tables()["TableNames"]
    with pytest.raises(ClientError) as again:
        dynamodb.create_table(TableName=table, **KEYS)
    assert code(again) == "ResourceInUseException"
    with pytest.raises(ClientError) as missing:
        dynamodb.describe_table(TableName="nope-table")
    assert code(missing) == "ResourceNotFoundException"


def test_query_by_key_condition_pages_and_orders(dynamodb, table):
    page = dynamodb.query(TableName=table, KeyConditionExpression="thing = :t AND ts BETWEEN :a AND :b",
                          ExpressionAttributeValues={":t": {"S": "a"}, ":a": {"N": "1010"}, ":b": {"N": "1059"}},
                          Limit=20)
    assert [i["ts"]["N"] for i in page["Items"]][:2] == ["1010", "1011"] and page["Count"] == 20
    assert page["LastEvaluatedKey"] == {"thing": {"S": "a"}, "ts": {"N": "1029"}}
    pages = list(dynamodb.get_paginator("query").paginate(
        TableName=table, KeyConditionExpression="#k = :t AND ts BETWEEN :a AND :b", ExpressionAttributeNames={"#k": "thing"},
        ExpressionAttributeValues={":t": {"S": "a"}, ":a": {"N": "1010"}, ":b": {"N": "1059"}},
        PaginationConfig={"PageSize": 20}))
    assert sum(p["Count"] for p in pages) == 50
    latest = dynamodb.query(TableName=table, KeyConditionExpression="thing = :t", ScanIndexForward=False, Limit=1,
                            ExpressionAttributeValues={":t": {"S": "a"}})["Items"]
    assert latest[0]["ts"] == {"N": "1099"} and latest[0]["temp"] == {"N": "29.9"}
    assert dynamodb.query(TableName=table, KeyConditionExpression="thing = :t AND ts > :x",
                          ExpressionAttributeValues={":t": {"S": "b"}, ":x": {"N": "5"}})["Count"] == 0


def test_what_dynamodb_refuses_is_refused(dynamodb, table):
    with pytest.raises(ClientError) as nokey:
        dynamodb.put_item(TableName=table, Item={"thing": {"S": "a"}, "temp": {"N": "1"}})
    assert code(nokey) == "ValidationException" and "Missing the key ts" in str(nokey.value)
    with pytest.raises(ClientError) as wrongtype:
        dynamodb.put_item(TableName=table, Item={"thing": {"S": "a"}, "ts": {"S": "x"}})
    assert code(wrongtype) == "ValidationException" and "Type mismatch" in str(wrongtype.value)
    with pytest.raises(ClientError) as toomany:
        dynamodb.batch_write_item(RequestItems={table: [
            {"PutRequest": {"Item": {"thing": {"S": "c"}, "ts": {"N": str(i)}}}} for i in range(26)]})
    assert code(toomany) == "ValidationException"
    with pytest.raises(ClientError) as nopk:
        dynamodb.query(TableName=table, KeyConditionExpression="ts > :x", ExpressionAttributeValues={":x": {"N": "1"}})
    assert code(nopk) == "ValidationException"
    with pytest.raises(ClientError) as unbound:
        dynamodb.query(TableName=table, KeyConditionExpression="thing = :nope")
    assert code(unbound) == "ValidationException"


def test_ttl_is_configured_and_expired_items_are_swept(dynamodb, tmp_path):
    from fleetdesk.sandbox.dynamodb_store import DynamoStore

    dynamodb.create_table(TableName="ttl-table", **KEYS)
    spec = dynamodb.update_time_to_live(TableName="ttl-table",
                                        TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires"})
    assert spec["TimeToLiveSpecification"] == {"Enabled": True, "AttributeName": "expires"}
    assert dynamodb.describe_time_to_live(TableName="ttl-table")["TimeToLiveDescription"] == {
        "TimeToLiveStatus": "ENABLED", "AttributeName": "expires"}
    # the sweep itself, on a store with a clock we move
    now = [1000.0]
    store = DynamoStore(tmp_path / "d.sqlite", "us-east-1", "123456789012", clock=lambda: now[0])
    store.create_table({"TableName": "t-x", **KEYS})
    store.update_ttl("t-x", {"Enabled": True, "AttributeName": "expires"})
    store.put_item("t-x", {"thing": {"S": "a"}, "ts": {"N": "1"}, "expires": {"N": "1500"}})
    store.put_item("t-x", {"thing": {"S": "a"}, "ts": {"N": "2"}, "expires": {"N": "5000"}})
    store.put_item("t-x", {"thing": {"S": "a"}, "ts": {"N": "3"}, "expires": {"S": "not a number"}})
    now[0] = 2000.0
    assert store.sweep_expired() == 1
    left = store.query("t-x", {"KeyConditionExpression": "thing = :t", "ExpressionAttributeValues": {":t": {"S": "a"}}})
    assert [i["ts"]["N"] for i in left["Items"]] == ["2", "3"]
