"""The jobs service answers hostile device requests with AWS error codes and never crashes (no broker)."""

from __future__ import annotations

import json
from types import SimpleNamespace

from fleetdesk.sandbox.jobs_service import JobsService


class Registry:
    def describe_thing(self, name):
        return {"thingName": name}

    def things_in_group(self, name, recursive=False):
        return ["a"]


def test_garbage_requests_get_rejected_with_codes(tmp_path):
    sent: list[tuple[str, dict]] = []
    ctx = SimpleNamespace(state_dir=tmp_path, account_id="123", region="us-east-1", registry=Registry(),
                          https_port=1)
    svc = JobsService(ctx, lambda t, p: sent.append((t, p)))
    svc.engine.create_job("j1", {"targets": ["arn:aws:iot:us-east-1:123:thing/a"]}, "{}")
    base = "$aws/things/a/jobs"
    cases = [
        (f"{base}/get", b"{nope"),
        (f"{base}/get", b"[1]"),
        (f"{base}/j1/update", json.dumps({"status": "DONE", "clientToken": "c1"}).encode()),
        (f"{base}/j1/update", json.dumps({"status": "IN_PROGRESS", "expectedVersion": "x"}).encode()),
        (f"{base}/j1/update", json.dumps({"status": "IN_PROGRESS", "statusDetails": {"a": 1}}).encode()),
        (f"{base}/j1/update", json.dumps({"status": "IN_PROGRESS", "stepTimeoutInMinutes": -3}).encode()),
        (f"{base}/nope/update", json.dumps({"status": "SUCCEEDED", "clientToken": "c2"}).encode()),
        (f"{base}/$next/update", json.dumps({"status": "SUCCEEDED"}).encode()),
        (f"{base}/start-next", json.dumps({"statusDetails": "x"}).encode()),
    ]
    for topic, payload in cases:
        svc.on_message(topic, payload)
    rejected = [(t, p) for t, p in sent if t.endswith("/rejected")]
    codes = [p["code"] for _, p in rejected]
    assert codes == ["InvalidJson", "InvalidJson", "InvalidRequest", "InvalidRequest", "InvalidRequest",
                     "InvalidRequest", "ResourceNotFound", "InvalidRequest", "InvalidRequest"]
    assert rejected[2][1]["clientToken"] == "c1" and rejected[6][1]["clientToken"] == "c2"
    assert all("timestamp" in p and p["message"] for _, p in rejected)
    # and the execution is untouched: still startable
    svc.on_message(f"{base}/start-next", b'{"clientToken":"ok"}')
    accepted = [p for t, p in sent if t == f"{base}/start-next/accepted"]
    assert accepted[-1]["execution"]["status"] == "IN_PROGRESS" and accepted[-1]["clientToken"] == "ok"
    svc.store.close()


def test_fuzzed_device_requests_each_get_one_answer(tmp_path):
    import random

    rng = random.Random(99)
    sent: list[tuple[str, dict]] = []
    ctx = SimpleNamespace(state_dir=tmp_path, account_id="123", region="us-east-1", registry=Registry(),
                          https_port=1)
    svc = JobsService(ctx, lambda t, p: sent.append((t, p)))
    for j in range(3):
        svc.engine.create_job(f"j{j}", {"targets": ["arn:aws:iot:us-east-1:123:thing/a"]}, '{"x": 1}')
    values = [None, 1, -1, 2.5, "x", True, [], {}, {"a": "b"}, {"a": 1}, "IN_PROGRESS", "SUCCEEDED", 10**12]
    for _ in range(400):
        suffix = rng.choice(["get", "start-next", "j0/get", "j1/update", "j2/update", "$next/get", "zz/update"])
        if rng.random() < 0.2:
            payload = bytes(rng.randrange(256) for _ in range(rng.randrange(20)))
        else:
            keys = ["status", "statusDetails", "expectedVersion", "executionNumber", "stepTimeoutInMinutes",
                    "includeJobDocument", "includeJobExecutionState", "clientToken"]
            payload = json.dumps({k: rng.choice(values) for k in rng.sample(keys, rng.randrange(len(keys)))}).encode()
        before = len(sent)
        svc.on_message(f"$aws/things/a/jobs/{suffix}", payload)
        answers = [t for t, _ in sent[before:] if t.endswith(("/accepted", "/rejected"))]
        assert answers and answers[0] == f"$aws/things/a/jobs/{suffix}/" + answers[0].rsplit("/", 1)[1]
        assert len(answers) == 1, (suffix, payload)
    svc.store.close()


def test_notify_rules(tmp_path):
    sent: list[tuple[str, dict]] = []
    ctx = SimpleNamespace(state_dir=tmp_path, account_id="123", region="us-east-1", registry=Registry(),
                          https_port=1)
    svc = JobsService(ctx, lambda t, p: sent.append((t, p)))
    arn = "arn:aws:iot:us-east-1:123:thing/a"
    svc.engine.create_job("j1", {"targets": [arn]}, "{}")
    svc.engine.create_job("j2", {"targets": [arn]}, "{}")
    svc.notify_changes()
    topics = [t.rsplit("/", 1)[1] for t, _ in sent]
    assert topics == ["notify", "notify-next"] and sent[1][1]["execution"]["jobId"] == "j1"
    sent.clear()
    svc.on_message("$aws/things/a/jobs/start-next", b"{}")  # j1 QUEUED -> IN_PROGRESS: same list, same next
    assert [t.rsplit("/", 1)[1] for t, _ in sent] == ["accepted"]
    sent.clear()
    svc.on_message("$aws/things/a/jobs/j1/update", b'{"status":"SUCCEEDED"}')  # j1 leaves: next is j2
    kinds = [t.rsplit("/", 1)[1] for t, _ in sent]
    assert kinds == ["accepted", "notify", "notify-next"]
    assert [j["jobId"] for j in sent[1][1]["jobs"]["QUEUED"]] == ["j2"]
    assert sent[2][1]["execution"]["jobId"] == "j2"
    sent.clear()
    svc.on_message("$aws/things/a/jobs/j2/update", b'{"status":"FAILED"}')
    assert [t.rsplit("/", 1)[1] for t, _ in sent] == ["accepted", "notify", "notify-next"]
    assert sent[1][1]["jobs"] == {} and "execution" not in sent[2][1]
    svc.store.close()
