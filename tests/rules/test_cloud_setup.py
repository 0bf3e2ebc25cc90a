"""`fleetdesk cloud setup` on a sandbox profile: shows what it will create, creates it, is idempotent,
and the rule it makes puts every dt/<thing>/env reading into fleetdesk-telemetry."""

from __future__ import annotations

import json

import pytest
from helpers_sandbox import poll


def test_cloud_setup_creates_then_finds_everything_in_place(own_sandbox, iot, data, dynamodb, monkeypatch, capsys):
    from fleetdesk.cli import main

    monkeypatch.setenv("FLEETDESK_SANDBOX_DIR", own_sandbox.state_dir)
    assert main(["cloud", "setup"]) == 0
    out = capsys.readouterr().out
    assert "will create" in out and "fleetdesk-telemetry" in out and "fleetdesk_telemetry" in out
    assert main(["cloud", "setup", "--json"]) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert again["changed"] is False and all(s["action"] == "ok" for s in again["steps"])

    cfg = iot.get_indexing_configuration()["thingIndexingConfiguration"]
    assert cfg["thingIndexingMode"] == "REGISTRY_AND_SHADOW" and cfg["thingConnectivityIndexingMode"] == "STATUS"
    assert dynamodb.describe_time_to_live(TableName="fleetdesk-telemetry")["TimeToLiveDescription"][
        "AttributeName"] == "expires"
    data.publish(topic="dt/setup-thing/env", qos=1, payload=json.dumps({"temperature": 21.5, "humidity": 40, "seq": 3}))
    rows = poll(lambda: dynamodb.query(TableName="fleetdesk-telemetry", KeyConditionExpression="thing = :t",
                                       ExpressionAttributeValues={":t": {"S": "setup-thing"}})["Items"])
    row = rows[0]
    assert row["temperature"] == {"N": "21.5"} and row["seq"] == {"N": "3"}
    assert float(row["expires"]["N"]) - int(row["ts"]["N"]) / 1000 == pytest.approx(30 * 86400)
