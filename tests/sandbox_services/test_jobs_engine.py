"""Jobs state machine (pure engine, fake clock)."""

from __future__ import annotations

import json

import pytest

from fleetdesk.sandbox.jobs_engine import JobsEngine, JobsError

GROUPS = {"g1": ["a", "b"]}


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def expand(targets):
    out = []
    for arn in targets:
        kind, name = arn.split(":")[-1].split("/", 1)
        if kind == "thing":
            out.append(name)
        elif name in GROUPS:
            out.extend(GROUPS[name])
        else:
            raise JobsError("ResourceNotFoundException", f"{arn} not found", 404)
    return out


def T(name):
    return f"arn:aws:iot:us-east-1:123:thing/{name}"


def G(name):
    return f"arn:aws:iot:us-east-1:123:thinggroup/{name}"


@pytest.fixture
def eng():
    GROUPS["g1"] = ["a", "b"]
    return JobsEngine("123", "us-east-1", expand, clock=Clock())


DOC = json.dumps({"operation": "reboot"})


def test_snapshot_job_lifecycle_and_counts(eng):
    eng.create_job("j1", {"targets": [G("g1")]}, DOC)
    assert eng.take_changed() == {"a", "b"}
    ex = eng.start_next("a", {"step": "dl"})
    assert ex["status"] == "IN_PROGRESS" and ex["versionNumber"] == 2
    eng.device_update("a", "j1", {"status": "SUCCEEDED", "expectedVersion": 2})
    d = eng.describe_job("j1")["job"]
    assert d["status"] == "IN_PROGRESS"
    assert d["jobProcessDetails"]["numberOfSucceededThings"] == 1
    assert d["jobProcessDetails"]["numberOfQueuedThings"] == 1
    eng.device_update("b", "j1", {"status": "FAILED"})
    assert eng.describe_job("j1")["job"]["status"] == "COMPLETED"


def test_version_mismatch_and_unknown_job_and_terminal(eng):
    eng.create_job("j1", {"targets": [T("a")]}, DOC)
    with pytest.raises(JobsError) as e:
        eng.device_update("a", "j1", {"status": "IN_PROGRESS", "expectedVersion": 9})
    assert e.value.code == "VersionMismatch" and e.value.execution_state["versionNumber"] == 1
    with pytest.raises(JobsError) as e:
        eng.device_update("a", "nope", {"status": "SUCCEEDED"})
    assert e.value.code == "ResourceNotFound"
    eng.device_update("a", "j1", {"status": "SUCCEEDED"})
    with pytest.raises(JobsError) as e:
        eng.device_update("a", "j1", {"status": "FAILED"})
    assert e.value.code == "InvalidStateTransition"


def test_bad_documents_rejected(eng):
    with pytest.raises(JobsError) as e:
        eng.create_job("j", {"targets": [T("a")]}, "{bad")
    assert e.value.code == "InvalidRequestException"
    with pytest.raises(JobsError):
        eng.create_job("j", {"targets": [T("a")]}, json.dumps({"x": "y" * 33000}))
    with pytest.raises(JobsError) as e:
        eng.create_job("j", {"targets": [T("a")]}, None)
    eng.create_job("j", {"targets": [T("a")]}, DOC)
    with pytest.raises(JobsError) as e:
        eng.create_job("j", {"targets": [T("a")]}, DOC)
    assert e.value.code == "ResourceAlreadyExistsException"


def test_cancel_with_and_without_force(eng):
    eng.create_job("j1", {"targets": [T("a"), T("b")]}, DOC)
    eng.start_next("a")
    eng.cancel_job("j1")
    assert eng.executions[("j1", "b")]["status"] == "CANCELED"
    assert eng.executions[("j1", "a")]["status"] == "IN_PROGRESS"
    eng.cancel_job("j1", force=True)
    assert eng.executions[("j1", "a")]["status"] == "CANCELED"
    assert eng.describe_job("j1")["job"]["forceCanceled"] is True


def test_continuous_job_reaches_later_member(eng):
    eng.create_job("c1", {"targets": [G("g1")], "targetSelection": "CONTINUOUS"}, DOC)
    GROUPS["g1"] = ["a", "b", "c"]
    eng.take_changed()
    eng.thing_joined_group("c")
    assert eng.take_changed() == {"c"}
    assert eng.next_execution("c")["jobId"] == "c1"


def test_continuous_job_execution_removed_when_thing_leaves(eng):
    eng.create_job("c1", {"targets": [G("g1")], "targetSelection": "CONTINUOUS"}, DOC)
    GROUPS["g1"] = ["b"]
    eng.thing_left_group("a")
    assert eng.executions[("c1", "a")]["status"] == "REMOVED"
    assert eng.describe_job("c1")["job"]["jobProcessDetails"]["numberOfRemovedThings"] == 1
    assert eng.executions[("c1", "b")]["status"] == "QUEUED"


def test_rollout_rate_limits_executions_per_minute(eng):
    GROUPS["g1"] = [f"t{i}" for i in range(5)]
    eng.create_job("r", {"targets": [G("g1")], "jobExecutionsRolloutConfig": {"maximumPerMinute": 2}}, DOC)
    assert len(eng.list_executions_for_job("r")) == 2
    eng.clock.t += 61
    eng.tick()
    assert len(eng.list_executions_for_job("r")) == 4


def test_abort_criteria_cancel_job(eng):
    GROUPS["g1"] = [f"t{i}" for i in range(4)]
    abort = {"criteriaList": [{"failureType": "FAILED", "action": "CANCEL", "thresholdPercentage": 50,
                               "minNumberOfExecutedThings": 2}]}
    eng.create_job("ab", {"targets": [G("g1")], "abortConfig": abort}, DOC)
    eng.device_update("t0", "ab", {"status": "FAILED"})
    assert eng.describe_job("ab")["job"]["status"] == "IN_PROGRESS"
    eng.device_update("t1", "ab", {"status": "FAILED"})
    job = eng.describe_job("ab")["job"]
    assert job["status"] == "CANCELED"
    assert job["jobProcessDetails"]["numberOfCanceledThings"] == 2


def test_step_and_job_timeouts(eng):
    eng.create_job("to", {"targets": [T("a"), T("b")], "timeoutConfig": {"inProgressTimeoutInMinutes": 10}}, DOC)
    eng.start_next("a", step_timeout=1)
    eng.start_next("b")
    eng.clock.t += 61
    eng.tick()
    assert eng.executions[("to", "a")]["status"] == "TIMED_OUT"
    assert eng.executions[("to", "b")]["status"] == "IN_PROGRESS"
    eng.clock.t += 600
    eng.tick()
    assert eng.executions[("to", "b")]["status"] == "TIMED_OUT"
    assert eng.describe_job("to")["job"]["status"] == "COMPLETED"


def test_pending_lists_and_next(eng):
    eng.create_job("j1", {"targets": [T("a")]}, DOC)
    eng.clock.t += 1
    eng.create_job("j2", {"targets": [T("a")]}, DOC)
    ip, q = eng.pending("a")
    assert ip == [] and [s["jobId"] for s in q] == ["j1", "j2"]
    eng.start_next("a")
    ip, q = eng.pending("a")
    assert [s["jobId"] for s in ip] == ["j1"] and [s["jobId"] for s in q] == ["j2"]
    assert eng.device_describe("a", "$next")["jobId"] == "j1"


def test_delete_job_in_progress_needs_force(eng):
    eng.create_job("j1", {"targets": [T("a")]}, DOC)
    eng.start_next("a")
    with pytest.raises(JobsError):
        eng.delete_job("j1")
    eng.delete_job("j1", force=True)
    assert eng.list_jobs() == [] and eng.next_execution("a") is None


def test_exponential_rollout_speeds_up_after_successes(eng):
    GROUPS["g1"] = [f"t{i}" for i in range(12)]
    rollout = {"exponentialRate": {"baseRatePerMinute": 2, "incrementFactor": 2.0,
                                   "rateIncreaseCriteria": {"numberOfSucceededThings": 2}}}
    eng.create_job("x", {"targets": [G("g1")], "jobExecutionsRolloutConfig": rollout}, DOC)
    first = [e["thingArn"].rsplit("/", 1)[1] for e in eng.list_executions_for_job("x")]
    assert len(first) == 2
    for t in first:
        eng.device_update(t, "x", {"status": "SUCCEEDED"})
    eng.clock.t += 61
    eng.tick()
    assert len(eng.list_executions_for_job("x")) == 2 + 4
