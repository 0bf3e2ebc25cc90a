"""`fleetdesk jobs create|list|describe|cancel` and `shadow watch` end to end against the sandbox.

What the operator typed must be what AWS holds: each result is read back with boto3, not from
the CLI's own output.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid

import boto3
import pytest

from fleetdesk.cli import main

pytestmark = pytest.mark.slow


@pytest.fixture
def sandbox_env(sandbox, monkeypatch):
    monkeypatch.setenv("FLEETDESK_SANDBOX_DIR", str(sandbox.state_dir))
    return sandbox


@pytest.fixture
def iot(sandbox):
    return boto3.client("iot", **sandbox.boto3_kwargs())


def _lines(capsys) -> list[dict]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]


def test_jobs_create_list_describe_cancel(sandbox_env, iot, capsys):
    tag = uuid.uuid4().hex[:6]
    things = [f"cli-job-{tag}-{i}" for i in range(2)]
    for t in things:
        iot.create_thing(thingName=t)
    job_id = f"cli-reboot-{tag}"
    assert main(["jobs", "create", job_id, "--template", "reboot", "--thing", things[0], "--thing", things[1],
                 "--rate", "7", "--abort-percent", "25", "--timeout-minutes", "12", "--description", "night reboot",
                 "--json"]) == 0
    assert _lines(capsys)[-1]["jobId"] == job_id

    job = iot.describe_job(jobId=job_id)["job"]  # what AWS holds, not what the CLI printed
    assert job["description"] == "night reboot"
    assert job["jobExecutionsRolloutConfig"]["maximumPerMinute"] == 7
    crit = job["abortConfig"]["criteriaList"][0]
    assert crit["failureType"] == "FAILED" and crit["action"] == "CANCEL" and crit["thresholdPercentage"] == 25
    assert job["timeoutConfig"]["inProgressTimeoutInMinutes"] == 12
    assert sorted(t.rsplit("/", 1)[-1] for t in job["targets"]) == sorted(things)
    assert json.loads(iot.get_job_document(jobId=job_id)["document"])["operation"] == "reboot"

    assert main(["jobs", "list", "--json"]) == 0
    assert job_id in [j["jobId"] for j in _lines(capsys)]

    assert main(["jobs", "describe", job_id, "--executions", "--json"]) == 0
    rows = _lines(capsys)
    assert rows[0]["jobId"] == job_id
    assert sorted((r["thing"], r["status"]) for r in rows[1:]) == [(t, "QUEUED") for t in sorted(things)]

    assert main(["jobs", "cancel", job_id, "--thing", things[0], "--json"]) == 0
    assert _lines(capsys)[-1] == {"jobId": job_id, "thing": things[0], "canceled": True}
    ex = iot.describe_job_execution(jobId=job_id, thingName=things[0])["execution"]
    assert ex["status"] == "CANCELED"
    assert iot.describe_job_execution(jobId=job_id, thingName=things[1])["execution"]["status"] == "QUEUED"

    assert main(["jobs", "cancel", job_id, "--json"]) == 0
    capsys.readouterr()
    assert iot.describe_job(jobId=job_id)["job"]["status"] == "CANCELED"


def test_jobs_create_with_an_unknown_template_names_the_known_ones(sandbox_env, iot, capsys):
    t = f"cli-job-{uuid.uuid4().hex[:6]}"
    iot.create_thing(thingName=t)
    assert main(["jobs", "create", f"j-{t}", "--template", "no-such-template", "--thing", t]) != 0
    err = capsys.readouterr().err
    assert "no-such-template" in err and "reboot" in err
    with pytest.raises(iot.exceptions.ResourceNotFoundException):
        iot.describe_job(jobId=f"j-{t}")


def test_shadow_watch_prints_each_delta_and_document(sandbox_env, tmp_path):
    import boto3 as b3

    thing = f"cli-watch-{uuid.uuid4().hex[:6]}"
    data = b3.client("iot-data", **sandbox_env.boto3_kwargs())
    env = dict(os.environ, FLEETDESK_SANDBOX_DIR=str(sandbox_env.state_dir))
    watch = subprocess.Popen([sys.executable, "-m", "fleetdesk", "shadow", "watch", thing, "--count", "2", "--json"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        # The watcher subscribes after it starts: keep updating until it has seen two events.
        deadline = time.monotonic() + 60
        n = 0
        while watch.poll() is None and time.monotonic() < deadline:
            n += 1
            data.update_thing_shadow(thingName=thing, payload=json.dumps({"state": {"desired": {"refresh": 1000 * (n + 1)}}}))
            try:
                watch.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                pass
        out, err = watch.communicate(timeout=30)
    finally:
        if watch.poll() is None:
            watch.kill()
    assert watch.returncode == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    assert len(events) == 2 and {e["thing"] for e in events} == {thing}
    assert {e["kind"] for e in events} <= {"delta", "documents"}
    for e in events:
        state = e["doc"].get("state") or e["doc"]["current"]["state"]
        desired = state.get("desired", state)  # a delta's state is the desired difference itself
        assert desired["refresh"] >= 2000
