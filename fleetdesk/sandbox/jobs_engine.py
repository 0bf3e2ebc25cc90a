"""AWS IoT Jobs state machine, pure (no broker, no HTTP): jobs, executions, rollout, abort.

Execution states follow AWS: QUEUED -> IN_PROGRESS -> SUCCEEDED | FAILED | TIMED_OUT |
REJECTED | REMOVED | CANCELED. A job is IN_PROGRESS until every execution is terminal
(SNAPSHOT) and then COMPLETED; CONTINUOUS jobs stay IN_PROGRESS and reach things that
join a target group later. ``jobExecutionsRolloutConfig`` limits how many executions are
created per minute (``tick`` releases them), ``abortConfig`` cancels a job when the share of
failed executions crosses a threshold, ``timeoutConfig`` and ``stepTimeoutInMinutes`` time
executions out.

Errors: control-plane calls raise :class:`JobsError` with the AWS exception name
(``ResourceNotFoundException``...); device calls raise it with the MQTT error code
(``ResourceNotFound``, ``VersionMismatch``, ``InvalidStateTransition``, ``InvalidRequest``...).
Callers read :attr:`JobsEngine.changed_things` after each call to publish notifications.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any, Callable

from fleetdesk.sandbox import strict_json

MAX_DOCUMENT_BYTES = 32 * 1024
JOB_ID_RE = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
TERMINAL = {"SUCCEEDED", "FAILED", "TIMED_OUT", "REJECTED", "REMOVED", "CANCELED"}
PENDING = {"QUEUED", "IN_PROGRESS"}
DEVICE_SETTABLE = {"IN_PROGRESS", "SUCCEEDED", "FAILED", "REJECTED"}
COUNT_KEYS = {
    "CANCELED": "numberOfCanceledThings",
    "SUCCEEDED": "numberOfSucceededThings",
    "FAILED": "numberOfFailedThings",
    "REJECTED": "numberOfRejectedThings",
    "QUEUED": "numberOfQueuedThings",
    "IN_PROGRESS": "numberOfInProgressThings",
    "REMOVED": "numberOfRemovedThings",
    "TIMED_OUT": "numberOfTimedOutThings",
}


class JobsError(Exception):
    """A refused jobs request.

    Args:
        code: AWS exception name (control plane) or MQTT error code (device side).
        message: human text.
        status: HTTP status for the control plane.
        execution_state: for device-side VersionMismatch, the current execution state.
    """

    def __init__(self, code: str, message: str, status: int = 400, execution_state: dict | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.execution_state = execution_state


def _now() -> float:
    return time.time()


class JobsEngine:
    """All jobs and executions of one sandbox.

    Args:
        account_id: AWS account id for ARNs.
        region: AWS region for ARNs.
        expand_targets: maps a list of thing/thing-group ARNs to thing names (groups
            expanded, nested ones included).
        save: called with ("job", job_id, dict) / ("exec", "job_id|thing", dict) /
            ("delete", job_id, None) to persist a change; may be None.
        clock: returns epoch seconds (tests inject a fake clock).
    """

    def __init__(
        self,
        account_id: str,
        region: str,
        expand_targets: Callable[[list[str]], list[str]],
        save: Callable[[str, str, dict | None], None] | None = None,
        clock: Callable[[], float] = _now,
    ) -> None:
        self.account_id = account_id
        self.region = region
        self.expand_targets = expand_targets
        self._save = save or (lambda kind, key, data: None)
        self.clock = clock
        self.jobs: dict[str, dict] = {}
        self.executions: dict[tuple[str, str], dict] = {}
        self._by_job: dict[str, dict[str, dict]] = {}  # job id -> thing -> execution
        self._by_thing: dict[str, dict[str, dict]] = {}  # thing -> job id -> execution
        self.changed_things: set[str] = set()

    # ---- persistence -------------------------------------------------------------------
    def load(self, jobs: list[dict], executions: list[dict]) -> None:
        """Restore saved jobs and executions."""
        self.jobs = {j["jobId"]: j for j in jobs}
        self.executions = {}
        self._by_job, self._by_thing = {}, {}
        for e in executions:
            self._index(e)

    def _put_job(self, job: dict) -> None:
        job["lastUpdatedAt"] = self.clock()
        self._save("job", job["jobId"], job)

    def _put_exec(self, ex: dict) -> None:
        self._save("exec", f"{ex['jobId']}|{ex['thingName']}", ex)
        self.changed_things.add(ex["thingName"])

    # ---- helpers -----------------------------------------------------------------------
    def job_arn(self, job_id: str) -> str:
        return f"arn:aws:iot:{self.region}:{self.account_id}:job/{job_id}"

    def thing_arn(self, thing: str) -> str:
        return f"arn:aws:iot:{self.region}:{self.account_id}:thing/{thing}"

    def _job(self, job_id: str) -> dict:
        job = self.jobs.get(job_id)
        if job is None:
            raise JobsError("ResourceNotFoundException", f"Job {job_id} cannot be found.", 404)
        return job

    def _index(self, ex: dict) -> None:
        self.executions[(ex["jobId"], ex["thingName"])] = ex
        self._by_job.setdefault(ex["jobId"], {})[ex["thingName"]] = ex
        self._by_thing.setdefault(ex["thingName"], {})[ex["jobId"]] = ex

    def _unindex(self, ex: dict) -> None:
        self.executions.pop((ex["jobId"], ex["thingName"]), None)
        self._by_job.get(ex["jobId"], {}).pop(ex["thingName"], None)
        self._by_thing.get(ex["thingName"], {}).pop(ex["jobId"], None)

    def _execs_of_job(self, job_id: str) -> list[dict]:
        return list(self._by_job.get(job_id, {}).values())

    def _execs_of_thing(self, thing: str) -> list[dict]:
        return list(self._by_thing.get(thing, {}).values())

    def process_details(self, job_id: str) -> dict:
        """Job-level execution counts (``jobProcessDetails``)."""
        counts: dict[str, Any] = {v: 0 for v in COUNT_KEYS.values()}
        for ex in self._execs_of_job(job_id):
            counts[COUNT_KEYS[ex["status"]]] += 1
        job = self.jobs[job_id]
        counts["processingTargets"] = list(job.get("targets", [])) if job["status"] == "IN_PROGRESS" else []
        return counts

    # ---- control plane -----------------------------------------------------------------
    def create_job(self, job_id: str, body: dict, document: str | None) -> dict:
        """CreateJob. ``document`` is the resolved document text (from ``document`` or ``documentSource``).

        Raises:
            JobsError: InvalidRequestException (bad id, document, targets),
                ResourceAlreadyExistsException.
        """
        if not JOB_ID_RE.match(job_id or ""):
            raise JobsError("InvalidRequestException", "jobId must match [a-zA-Z0-9_-]{1,64}.")
        if job_id in self.jobs:
            raise JobsError("ResourceAlreadyExistsException", f"Job {job_id} already exists.", 409)
        if document is None:
            raise JobsError("InvalidRequestException", "Either document or documentSource must be specified.")
        if len(document.encode()) > MAX_DOCUMENT_BYTES:
            raise JobsError("InvalidRequestException", "The job document exceeds the maximum size of 32 KB.")
        try:
            parsed = strict_json.loads(document)
        except ValueError as exc:
            raise JobsError("InvalidRequestException", f"The job document is not valid JSON: {exc}") from None
        if not isinstance(parsed, dict):
            raise JobsError("InvalidRequestException", "The job document must be a JSON object.")
        targets = body.get("targets") or []
        if not targets:
            raise JobsError("InvalidRequestException", "targets must name at least one thing or thing group.")
        selection = body.get("targetSelection", "SNAPSHOT")
        if selection not in ("SNAPSHOT", "CONTINUOUS"):
            raise JobsError("InvalidRequestException", "targetSelection must be SNAPSHOT or CONTINUOUS.")
        if selection == "CONTINUOUS" and not any(":thinggroup/" in t for t in targets):
            raise JobsError("InvalidRequestException", "A CONTINUOUS job must target at least one thing group.")
        things = self.expand_targets(targets)  # raises for unknown targets
        now = self.clock()
        rollout = body.get("jobExecutionsRolloutConfig") or {}
        rate = None
        if rollout.get("exponentialRate"):
            rate = float(rollout["exponentialRate"]["baseRatePerMinute"])
        elif rollout.get("maximumPerMinute"):
            rate = float(rollout["maximumPerMinute"])
        job = {
            "jobId": job_id,
            "jobArn": self.job_arn(job_id),
            "targetSelection": selection,
            "status": "IN_PROGRESS",
            "targets": targets,
            "description": body.get("description"),
            "document": document,
            "documentSource": body.get("documentSource"),
            "presignedUrlConfig": body.get("presignedUrlConfig"),
            "jobExecutionsRolloutConfig": body.get("jobExecutionsRolloutConfig"),
            "abortConfig": body.get("abortConfig"),
            "timeoutConfig": body.get("timeoutConfig"),
            "createdAt": now,
            "lastUpdatedAt": now,
            "forceCanceled": False,
            "pendingThings": list(dict.fromkeys(things)),
            "releases": [],
            "rate": rate,
            "rateBaseline": {"notified": 0, "succeeded": 0},
        }
        self.jobs[job_id] = job
        self._release(job)
        self._maybe_complete(job)
        self._put_job(job)
        return {"jobArn": job["jobArn"], "jobId": job_id, "description": job["description"]}

    def describe_job(self, job_id: str) -> dict:
        """DescribeJob response."""
        job = self._job(job_id)
        out = {k: job[k] for k in (
            "jobArn", "jobId", "targetSelection", "status", "forceCanceled", "targets", "description",
            "presignedUrlConfig", "jobExecutionsRolloutConfig", "abortConfig", "timeoutConfig",
            "createdAt", "lastUpdatedAt") if job.get(k) is not None}
        for k in ("completedAt", "reasonCode", "comment"):
            if job.get(k) is not None:
                out[k] = job[k]
        out["jobProcessDetails"] = self.process_details(job_id)
        result = {"job": out}
        if job.get("documentSource"):
            result["documentSource"] = job["documentSource"]
        return result

    def get_document(self, job_id: str) -> str:
        """GetJobDocument: the stored document text (placeholders unresolved)."""
        return self._job(job_id)["document"]

    def list_jobs(self, status: str | None = None, selection: str | None = None) -> list[dict]:
        """ListJobs summaries, newest first."""
        out = []
        for job in sorted(self.jobs.values(), key=lambda j: j["createdAt"], reverse=True):
            if status and job["status"] != status:
                continue
            if selection and job["targetSelection"] != selection:
                continue
            s = {k: job[k] for k in ("jobArn", "jobId", "targetSelection", "status", "createdAt", "lastUpdatedAt")}
            if job.get("completedAt"):
                s["completedAt"] = job["completedAt"]
            out.append(s)
        return out

    def cancel_job(self, job_id: str, force: bool = False, reason: str | None = None, comment: str | None = None) -> dict:
        """CancelJob: queued executions become CANCELED; in-progress ones only with ``force``."""
        job = self._job(job_id)
        if job["status"] == "COMPLETED":
            raise JobsError("InvalidStateTransitionException", f"Job {job_id} is already COMPLETED.", 409)
        if job["status"] == "CANCELED" and not force:
            return {"jobArn": job["jobArn"], "jobId": job_id, "description": job.get("description")}
        now = self.clock()
        for ex in self._execs_of_job(job_id):
            if ex["status"] == "QUEUED" or (force and ex["status"] == "IN_PROGRESS"):
                self._set_status(ex, "CANCELED", now, forced=ex["status"] == "IN_PROGRESS")
        job.update(status="CANCELED", pendingThings=[], forceCanceled=bool(force) or job["forceCanceled"],
                   completedAt=now)
        if reason:
            job["reasonCode"] = reason
        if comment:
            job["comment"] = comment
        self._put_job(job)
        return {"jobArn": job["jobArn"], "jobId": job_id, "description": job.get("description")}

    def delete_job(self, job_id: str, force: bool = False) -> None:
        """DeleteJob: refused for an IN_PROGRESS job with in-progress executions unless ``force``."""
        self._job(job_id)  # ResourceNotFoundException for an unknown job
        running = [e for e in self._execs_of_job(job_id) if e["status"] == "IN_PROGRESS"]
        if running and not force:
            raise JobsError("InvalidStateTransitionException",
                            f"Job {job_id} has executions IN_PROGRESS; cancel it or use force.", 409)
        for ex in self._execs_of_job(job_id):
            self._unindex(ex)
            self.changed_things.add(ex["thingName"])
        del self.jobs[job_id]
        self._save("delete", job_id, None)

    def _summary(self, ex: dict) -> dict:
        s = {k: ex[k] for k in ("status", "queuedAt", "lastUpdatedAt", "executionNumber") if ex.get(k) is not None}
        if ex.get("startedAt"):
            s["startedAt"] = ex["startedAt"]
        return s

    def list_executions_for_job(self, job_id: str, status: str | None = None) -> list[dict]:
        """ListJobExecutionsForJob summaries."""
        self._job(job_id)
        return [{"thingArn": self.thing_arn(e["thingName"]), "jobExecutionSummary": self._summary(e)}
                for e in sorted(self._execs_of_job(job_id), key=lambda e: e["thingName"])
                if not status or e["status"] == status]

    def list_executions_for_thing(self, thing: str, status: str | None = None, job_id: str | None = None) -> list[dict]:
        """ListJobExecutionsForThing summaries."""
        return [{"jobId": e["jobId"], "jobExecutionSummary": self._summary(e)}
                for e in sorted(self._execs_of_thing(thing), key=lambda e: e["queuedAt"])
                if (not status or e["status"] == status) and (not job_id or e["jobId"] == job_id)]

    def _exec(self, job_id: str, thing: str, device: bool = False) -> dict:
        ex = self.executions.get((job_id, thing))
        if ex is None:
            if device:
                raise JobsError("ResourceNotFound", f"Job execution {job_id} for {thing} not found.")
            raise JobsError("ResourceNotFoundException", f"Job execution {job_id} for {thing} cannot be found.", 404)
        return ex

    def describe_execution(self, job_id: str, thing: str) -> dict:
        """DescribeJobExecution (control plane)."""
        ex = self._exec(job_id, thing)
        out = {k: ex[k] for k in ("jobId", "status", "queuedAt", "lastUpdatedAt", "executionNumber",
                                  "versionNumber", "forceCanceled") if ex.get(k) is not None}
        out["thingArn"] = self.thing_arn(thing)
        if ex.get("startedAt"):
            out["startedAt"] = ex["startedAt"]
        out["statusDetails"] = {"detailsMap": dict(ex.get("statusDetails") or {})}
        if ex["status"] == "IN_PROGRESS" and ex.get("deadline"):
            out["approximateSecondsBeforeTimedOut"] = max(0, int(ex["deadline"] - self.clock()))
        return {"execution": out}

    def cancel_execution(self, job_id: str, thing: str, force: bool = False, expected_version: int | None = None,
                         status_details: dict | None = None) -> None:
        """CancelJobExecution."""
        ex = self._exec(job_id, thing)
        if ex["status"] in TERMINAL:
            raise JobsError("InvalidStateTransitionException", f"Job execution is already {ex['status']}.", 409)
        if ex["status"] == "IN_PROGRESS" and not force:
            raise JobsError("InvalidStateTransitionException",
                            "The job execution is IN_PROGRESS; use force to cancel it.", 409)
        if expected_version is not None and int(expected_version) != ex["versionNumber"]:
            raise JobsError("VersionConflictException", "expectedVersion does not match the execution's version.", 409)
        if status_details:
            ex["statusDetails"] = dict(status_details)
        self._set_status(ex, "CANCELED", self.clock(), forced=ex["status"] == "IN_PROGRESS")
        self._maybe_complete(self.jobs[job_id])

    # ---- device side (MQTT) -------------------------------------------------------------
    def pending(self, thing: str) -> tuple[list[dict], list[dict]]:
        """(inProgressJobs, queuedJobs) summaries for ``jobs/get`` and ``notify``."""
        in_progress, queued = [], []
        for ex in sorted(self._execs_of_thing(thing), key=lambda e: (e["queuedAt"], e["jobId"])):
            s = {"jobId": ex["jobId"], "queuedAt": int(ex["queuedAt"]), "lastUpdatedAt": int(ex["lastUpdatedAt"]),
                 "versionNumber": ex["versionNumber"], "executionNumber": ex["executionNumber"]}
            if ex["status"] == "IN_PROGRESS":
                s["startedAt"] = int(ex["startedAt"])
                in_progress.append(s)
            elif ex["status"] == "QUEUED":
                queued.append(s)
        return in_progress, queued

    def next_execution(self, thing: str) -> dict | None:
        """The next pending execution: oldest IN_PROGRESS, else oldest QUEUED."""
        execs = sorted(self._execs_of_thing(thing), key=lambda e: (e["queuedAt"], e["jobId"]))
        for status in ("IN_PROGRESS", "QUEUED"):
            for ex in execs:
                if ex["status"] == status:
                    return ex
        return None

    def execution_data(self, ex: dict, include_document: bool = True, resolve: Callable[[str, dict], str] | None = None) -> dict:
        """A JobExecutionData payload (MQTT), the document resolved through ``resolve``."""
        out: dict[str, Any] = {
            "jobId": ex["jobId"], "thingName": ex["thingName"], "status": ex["status"],
            "queuedAt": int(ex["queuedAt"]), "lastUpdatedAt": int(ex["lastUpdatedAt"]),
            "versionNumber": ex["versionNumber"], "executionNumber": ex["executionNumber"],
        }
        if ex.get("statusDetails"):
            out["statusDetails"] = dict(ex["statusDetails"])
        if ex.get("startedAt"):
            out["startedAt"] = int(ex["startedAt"])
        if include_document:
            job = self.jobs[ex["jobId"]]
            text = resolve(job["document"], job) if resolve else job["document"]
            out["jobDocument"] = json.loads(text)
        return out

    def _check_details(self, details: Any) -> dict | None:
        if details is None:
            return None
        if not isinstance(details, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in details.items()):
            raise JobsError("InvalidRequest", "statusDetails must be a map of strings to strings.")
        return details

    def _check_step(self, step: Any) -> int | None:
        if step is None:
            return None
        if isinstance(step, bool) or not isinstance(step, int) or not (1 <= step <= 10080):
            raise JobsError("InvalidRequest", "stepTimeoutInMinutes must be an integer from 1 to 10080.")
        return step

    def start_next(self, thing: str, status_details: Any = None, step_timeout: Any = None) -> dict | None:
        """``start-next``: moves the next QUEUED execution to IN_PROGRESS (or returns the in-progress one)."""
        details = self._check_details(status_details)
        step = self._check_step(step_timeout)
        ex = self.next_execution(thing)
        if ex is None:
            return None
        if ex["status"] == "QUEUED":
            now = self.clock()
            if details is not None:
                ex["statusDetails"] = details
            self._set_status(ex, "IN_PROGRESS", now, step=step)
        return ex

    def device_describe(self, thing: str, job_id: str) -> dict:
        """``<jobId>/get``; ``$next`` names the next pending execution."""
        if job_id == "$next":
            ex = self.next_execution(thing)
            if ex is None:
                raise JobsError("ResourceNotFound", f"No pending job execution for {thing}.")
            return ex
        return self._exec(job_id, thing, device=True)

    def device_update(self, thing: str, job_id: str, request: dict) -> dict:
        """``<jobId>/update`` from the device; returns the updated execution.

        Raises:
            JobsError: ResourceNotFound, InvalidRequest, InvalidStateTransition, VersionMismatch.
        """
        ex = self._exec(job_id, thing, device=True)
        status = request.get("status")
        if status not in DEVICE_SETTABLE:
            raise JobsError("InvalidRequest", f"status must be one of {sorted(DEVICE_SETTABLE)}.")
        details = self._check_details(request.get("statusDetails"))
        step = self._check_step(request.get("stepTimeoutInMinutes"))
        state = {"status": ex["status"], "statusDetails": dict(ex.get("statusDetails") or {}),
                 "versionNumber": ex["versionNumber"]}
        expected = request.get("expectedVersion")
        if expected is not None and int(expected) != ex["versionNumber"]:
            raise JobsError("VersionMismatch", "expectedVersion does not match the job execution's version.",
                            execution_state=state)
        number = request.get("executionNumber")
        if number is not None and int(number) != ex["executionNumber"]:
            raise JobsError("ResourceNotFound", f"Job execution number {number} not found.")
        if ex["status"] in TERMINAL:
            raise JobsError("InvalidStateTransition",
                            f"Job execution is in the terminal state {ex['status']}.", execution_state=state)
        if details is not None:
            ex["statusDetails"] = details
        self._set_status(ex, status, self.clock(), step=step)
        self._maybe_complete(self.jobs[job_id])
        return ex

    # ---- transitions, rollout, timeouts, abort -------------------------------------------
    def _set_status(self, ex: dict, status: str, now: float, step: int | None = None, forced: bool = False) -> None:
        if status == "IN_PROGRESS" and ex["status"] == "QUEUED":
            ex["startedAt"] = now
        ex["status"] = status
        ex["lastUpdatedAt"] = now
        ex["versionNumber"] += 1
        if forced:
            ex["forceCanceled"] = True
        if status == "IN_PROGRESS":
            job = self.jobs[ex["jobId"]]
            limits = []
            if step is not None:
                limits.append(now + step * 60)
            elif ex.get("stepDeadline"):
                limits.append(ex["stepDeadline"])
            if step is not None:
                ex["stepDeadline"] = now + step * 60
            total = (job.get("timeoutConfig") or {}).get("inProgressTimeoutInMinutes")
            if total:
                limits.append(ex["startedAt"] + int(total) * 60)
            ex["deadline"] = min(limits) if limits else None
        else:
            ex["deadline"] = None
        self._put_exec(ex)

    def _new_execution(self, job: dict, thing: str, now: float) -> None:
        ex = {"jobId": job["jobId"], "thingName": thing, "status": "QUEUED", "queuedAt": now,
              "lastUpdatedAt": now, "versionNumber": 1, "executionNumber": 1, "statusDetails": {},
              "forceCanceled": False}
        self._index(ex)
        if job.get("rate"):  # only rate-limited rollouts need the release times
            job["releases"].append(now)
        self._put_exec(ex)

    def _release(self, job: dict) -> None:
        """Create executions for pending targets within the rollout rate."""
        if job["status"] != "IN_PROGRESS" or not job["pendingThings"]:
            return
        now = self.clock()
        budget = len(job["pendingThings"])
        if job.get("rate"):
            recent = [t for t in job["releases"] if now - t < 60]
            job["releases"] = recent
            budget = max(0, int(job["rate"]) - len(recent))
        for thing in list(job["pendingThings"][:budget]):
            job["pendingThings"].remove(thing)
            if (job["jobId"], thing) not in self.executions:
                self._new_execution(job, thing, now)
        self._put_job(job)

    def _bump_rate(self, job: dict) -> None:
        cfg = (job.get("jobExecutionsRolloutConfig") or {}).get("exponentialRate")
        if not cfg:
            return
        crit = cfg.get("rateIncreaseCriteria") or {}
        execs = self._execs_of_job(job["jobId"])
        notified = len(execs)
        succeeded = sum(1 for e in execs if e["status"] == "SUCCEEDED")
        base = job["rateBaseline"]
        hit = (crit.get("numberOfNotifiedThings") and notified - base["notified"] >= crit["numberOfNotifiedThings"]) or \
              (crit.get("numberOfSucceededThings") and succeeded - base["succeeded"] >= crit["numberOfSucceededThings"])
        if hit:
            cap = (job.get("jobExecutionsRolloutConfig") or {}).get("maximumPerMinute") or 1000
            job["rate"] = min(float(cap), job["rate"] * float(cfg["incrementFactor"]))
            job["rateBaseline"] = {"notified": notified, "succeeded": succeeded}

    def _check_abort(self, job: dict) -> None:
        criteria = (job.get("abortConfig") or {}).get("criteriaList") or []
        if not criteria or job["status"] != "IN_PROGRESS":
            return
        execs = self._execs_of_job(job["jobId"])
        executed = [e for e in execs if e["status"] in {"SUCCEEDED", "FAILED", "REJECTED", "TIMED_OUT"}]
        for c in criteria:
            if len(executed) < int(c.get("minNumberOfExecutedThings", 1)):
                continue
            kinds = {"FAILED", "REJECTED", "TIMED_OUT"} if c["failureType"] == "ALL" else {c["failureType"]}
            bad = sum(1 for e in executed if e["status"] in kinds)
            if bad * 100.0 / len(executed) >= float(c["thresholdPercentage"]):
                self.cancel_job(job["jobId"], force=False, reason="AbortCriteriaMet",
                                comment=f"{c['failureType']} executions reached {c['thresholdPercentage']}%")
                return

    def _maybe_complete(self, job: dict) -> None:
        self._bump_rate(job)
        self._check_abort(job)
        if job["status"] != "IN_PROGRESS" or job["targetSelection"] == "CONTINUOUS" or job["pendingThings"]:
            self._put_job(job)
            return
        if all(e["status"] in TERMINAL for e in self._execs_of_job(job["jobId"])):
            job["status"] = "COMPLETED"
            job["completedAt"] = self.clock()
        self._put_job(job)

    def tick(self) -> None:
        """Periodic work: time out executions, release rollouts, re-check jobs."""
        now = self.clock()
        for ex in list(self.executions.values()):
            if ex["status"] == "IN_PROGRESS" and ex.get("deadline") and now >= ex["deadline"]:
                self._set_status(ex, "TIMED_OUT", now)
                self._maybe_complete(self.jobs[ex["jobId"]])
        for job in list(self.jobs.values()):
            if job["status"] == "IN_PROGRESS" and job["pendingThings"]:
                self._release(job)
                self._maybe_complete(job)

    def thing_joined_group(self, thing: str) -> None:
        """A thing joined a group (or a group changed): CONTINUOUS jobs targeting it reach it."""
        for job in self.jobs.values():
            if job["targetSelection"] != "CONTINUOUS" or job["status"] != "IN_PROGRESS":
                continue
            if (job["jobId"], thing) in self.executions or thing in job["pendingThings"]:
                continue
            try:
                members = self.expand_targets(job["targets"])
            except JobsError:
                continue
            if thing in members:
                job["pendingThings"].append(thing)
                self._release(job)

    def thing_left_group(self, thing: str) -> None:
        """A thing left a group: its pending executions of CONTINUOUS jobs it no longer matches become REMOVED."""
        now = self.clock()
        for job_id, ex in list(self._by_thing.get(thing, {}).items()):
            job = self.jobs[job_id]
            if ex["status"] not in PENDING or job["targetSelection"] != "CONTINUOUS":
                continue
            try:
                members = self.expand_targets(job["targets"])
            except JobsError:
                members = []
            if thing not in members:
                self._set_status(ex, "REMOVED", now)
                self._maybe_complete(job)
        for job in self.jobs.values():
            if thing in job["pendingThings"] and job["targetSelection"] == "CONTINUOUS":
                job["pendingThings"].remove(thing)
                self._put_job(job)

    def take_changed(self) -> set[str]:
        """Things whose pending executions changed since the last call."""
        out, self.changed_things = self.changed_things, set()
        return out
