"""The sandbox enforces IoT Core's control-plane rate quotas by default (ThrottlingException, counted
per caller in `sandbox status --json`), and a bench can lift them explicitly."""

from __future__ import annotations

import json

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from fleetdesk.sandbox.quotas import Quotas, parse_overrides


def test_token_bucket_allows_the_rate_and_refuses_above_it():
    now = [0.0]
    q = Quotas(None, {"ListThings": 10}, clock=lambda: now[0])
    assert sum(q.take("ListThings") for _ in range(25)) == 10  # one second's burst
    now[0] = 0.5
    assert sum(q.take("ListThings") for _ in range(25)) == 5   # refilled at 10/s
    assert all(q.take("DescribeThing") for _ in range(100))     # not a limited API


def test_overrides_name_the_problem():
    assert parse_overrides("SearchIndex=200, ListThings=off") == {"SearchIndex": 200.0, "ListThings": None}
    with pytest.raises(ValueError, match="unknown quota 'Nope'"):
        parse_overrides("Nope=1")
    with pytest.raises(ValueError, match="not a number"):
        parse_overrides("ListThings=fast")


def _status(state_dir: str, monkeypatch, capsys) -> dict:
    from fleetdesk.cli import main

    assert main(["sandbox", "status", "--json", "--state-dir", state_dir]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_list_things_over_quota_is_throttled_and_counted(own_sandbox, monkeypatch, capsys):
    import boto3

    iot = boto3.client("iot", **own_sandbox.boto3_kwargs(), config=Config(retries={"total_max_attempts": 1}))
    codes = []
    for _ in range(40):
        try:
            iot.list_things(maxResults=1)
            codes.append("ok")
        except ClientError as exc:
            codes.append(exc.response["Error"]["Code"])
            assert exc.response["Error"]["Message"] == "Rate exceeded"
    assert "ThrottlingException" in codes and codes[:5] == ["ok"] * 5
    throttled = codes.count("ThrottlingException")
    from helpers_sandbox import poll

    status = poll(lambda: (lambda s: s if s.get("throttled") else None)(
        _status(own_sandbox.state_dir, monkeypatch, capsys)), timeout=5)
    assert status["quotas"]["ListThings"] == 10
    assert poll(lambda: _status(own_sandbox.state_dir, monkeypatch, capsys)["throttled"][
        own_sandbox.aws_access_key_id]["ListThings"] == throttled, timeout=5)


def test_a_bench_lifts_a_quota_explicitly(tmp_path, monkeypatch):
    import boto3

    from fleetdesk.sandbox.child import start_sandbox, stop_sandbox

    monkeypatch.setenv("FLEETDESK_SANDBOX_QUOTAS", "ListThings=off")
    proc, info = start_sandbox(tmp_path / "state")
    try:
        iot = boto3.client("iot", **info.boto3_kwargs(), config=Config(retries={"total_max_attempts": 1}))
        for _ in range(40):
            iot.list_things(maxResults=1)
    finally:
        stop_sandbox(proc)
