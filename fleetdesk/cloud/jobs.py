"""Jobs as the app creates and watches them, Qt-free: templates, a checked :class:`JobRequest`,
and progress summaries that put failed executions and their reasons first (as the AWS
console's job page does: a job whose every execution failed still reads COMPLETED).
"""

from __future__ import annotations

import datetime
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fleetdesk.errors import FleetdeskError
from fleetdesk.paths import RESOURCES_DIR

TEMPLATE_DIR = RESOURCES_DIR / "jobs"
JOB_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # AWS IoT CreateJob jobId
PLACEHOLDERS = ("SHA256_OF_THE_IMAGE", "BUCKET")  # left in resources/jobs/ota.json until a file is picked
# jobProcessDetails counters, in the order a user reads them (failures first)
PROCESS_COUNTS = (("numberOfFailedThings", "failed"), ("numberOfTimedOutThings", "timed out"),
                  ("numberOfRejectedThings", "rejected"), ("numberOfRemovedThings", "removed"),
                  ("numberOfCanceledThings", "canceled"), ("numberOfInProgressThings", "in progress"),
                  ("numberOfQueuedThings", "queued"), ("numberOfSucceededThings", "succeeded"))
BAD_STATUSES = {"FAILED", "TIMED_OUT", "REJECTED"}


def load_templates(folder: Path = TEMPLATE_DIR) -> dict[str, str]:
    """Job document templates: {name: JSON text} from resources/jobs/*.json."""
    out = {}
    for p in sorted(folder.glob("*.json")):
        try:
            out[p.stem] = json.dumps(json.loads(p.read_text()), indent=2)
        except (OSError, ValueError):
            continue
    return out


def parse_document(text: str) -> dict:
    """A job document typed by the user.

    Raises:
        ValueError: "line L, column C: ..." or "must be a JSON object".
    """
    def not_json(name: str) -> Any:  # Python reads NaN/Infinity; JSON (and a board's parser) does not
        raise ValueError(f"{name} is not JSON: a board could not read the job (use a number or a string)")

    try:
        doc = json.loads(text, parse_constant=not_json)
    except json.JSONDecodeError as exc:
        raise ValueError(f"line {exc.lineno}, column {exc.colno}: {exc.msg}") from exc
    if not isinstance(doc, dict):
        raise ValueError("a job document must be a JSON object")
    return doc


def local_time(value: Any) -> str:
    """A job timestamp (datetime from boto3, epoch seconds or text) as local "YYYY-MM-DD HH:MM:SS"."""
    if isinstance(value, datetime.datetime):
        if value.tzinfo is not None:
            value = value.astimezone()
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return datetime.datetime.fromtimestamp(value).strftime("%Y-%m-%d %H:%M:%S")
    return str(value)[:19] if value else ""


def status_counts(statuses: Any) -> str:
    """"2 succeeded · 1 failed" for execution statuses, most common first."""
    counts: dict[str, int] = {}
    for st in statuses:
        key = (st or "unknown").lower().replace("_", " ")
        counts[key] = counts.get(key, 0) + 1
    return " · ".join(f"{n} {k}" for k, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def execution_details(execution: dict) -> str:
    """An execution's statusDetails as "k=v, k=v" (what the device said)."""
    d = execution.get("statusDetails") or {}
    m = d.get("detailsMap", d) if isinstance(d, dict) else {}
    return ", ".join(f"{k}={v}" for k, v in sorted(m.items())) if isinstance(m, dict) else str(m)


def failure_reason(execution: dict) -> str:
    """The device's reason for a failed execution (its ``reason``/``error`` detail, else all details)."""
    d = execution.get("statusDetails") or {}
    m = d.get("detailsMap", d) if isinstance(d, dict) else {}
    if isinstance(m, dict):
        for key in ("reason", "error", "message"):
            if m.get(key):
                return str(m[key])
    return execution_details(execution)


def process_summary(job: dict) -> tuple[str, bool]:
    """("3 failed · 1 succeeded", any_bad) from a DescribeJob's ``jobProcessDetails``."""
    details = job.get("jobProcessDetails") or {}
    parts = [f"{int(details[k])} {label}" for k, label in PROCESS_COUNTS if int(details.get(k) or 0)]
    bad = any(int(details.get(k) or 0) for k in ("numberOfFailedThings", "numberOfTimedOutThings",
                                                   "numberOfRejectedThings"))
    return " · ".join(parts), bad


def failures_text(rows: list[dict], limit: int = 3) -> str:
    """"2 of 4 failed: fd-a: no OTA app partition; fd-b: ..." ("" when none failed).

    ``rows``: executions with ``thing``, ``status`` and ``reason`` (or ``details``).
    """
    bad = sorted((r for r in rows if r.get("status") in BAD_STATUSES), key=lambda r: r["thing"])
    if not bad:
        return ""
    shown = "; ".join(f"{r['thing']}: {r.get('reason') or r.get('details') or r['status'].lower()}"
                      for r in bad[:limit])
    return f"{len(bad)} of {len(rows)} failed: {shown}" + ("; …" if len(bad) > limit else "")


@dataclass
class JobRequest:
    """A job as the user asked for it; :meth:`check` says what is wrong before the cloud is asked.

    Args mirror :meth:`fleetdesk.cloud.control.ControlPlane.create_job`.
    """

    document: dict
    things: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    job_id: str = ""
    continuous: bool = False
    max_per_minute: int | None = None
    abort_failed_percent: float | None = None
    abort_min_executed: int = 1
    timeout_minutes: int | None = None

    def check(self) -> None:
        """Refuse what CreateJob would refuse or what would only fail on every device.

        Raises:
            FleetdeskError: naming the problem and the fix.
        """
        text = json.dumps(self.document)
        if any(p in text for p in PLACEHOLDERS):
            raise FleetdeskError("the OTA template still has placeholders", "pick a firmware file first")
        if not self.things and not self.groups:
            raise FleetdeskError("the job has no target", "pick at least one thing or group to target")
        if self.job_id and not JOB_ID_RE.match(self.job_id):
            raise FleetdeskError(f"job id {self.job_id!r} is not valid",
                                 "use letters, digits, '-' and '_' (up to 64), e.g. ota-1_2_0-north, "
                                 "or leave it empty for an automatic one")

    def resolved_id(self) -> str:
        """The job id given, or "<operation>-YYYYmmdd-HHMMSS"."""
        if self.job_id:
            return self.job_id
        op = re.sub(r"[^A-Za-z0-9_-]", "_", str(self.document.get("operation", "job")))[:40] or "job"
        return f"{op}-{time.strftime('%Y%m%d-%H%M%S')}"

    async def create(self, control: Any) -> str:
        """Check, then CreateJob through ``control`` (a ControlPlane); returns the job id."""
        self.check()
        job_id = self.resolved_id()
        await control.create_job(job_id, self.document, things=self.things, groups=self.groups,
                                 continuous=self.continuous, max_per_minute=self.max_per_minute,
                                 abort_failed_percent=self.abort_failed_percent,
                                 abort_min_executed=self.abort_min_executed, timeout_minutes=self.timeout_minutes)
        return job_id


class JobWatch:
    """What the Jobs page shows, reloaded on its timer: every job with its execution counts,
    and one job's executions with the device's reasons (statusDetails is fetched only when an
    execution's status changed)."""

    def __init__(self, control: Any) -> None:
        self.control = control
        self._details: dict[tuple[str, str, str], tuple[str, str]] = {}
        self._counts: dict[str, dict] = {}  # finished jobs' DescribeJob (their counts no longer change)

    async def jobs(self, limit: int = 25) -> list[dict]:
        """ListJobs newest first, each with ``executions`` ("3 failed · 1 succeeded") and ``bad``."""
        jobs = sorted(await self.control.list_jobs(), key=lambda j: str(j.get("createdAt", "")), reverse=True)
        for j in jobs[:limit]:
            job_id = j.get("jobId", "")
            desc = self._counts.get(job_id)
            if desc is None:
                try:
                    desc = await self.control.describe_job(job_id)
                except FleetdeskError:
                    desc = {}
                if desc.get("status") not in (None, "IN_PROGRESS", "SCHEDULED"):
                    self._counts[job_id] = desc
            j["executions"], j["bad"] = process_summary(desc)
        return jobs

    async def executions(self, job_id: str) -> list[dict]:
        """Executions of ``job_id`` sorted by thing, each with ``details`` and ``reason``."""
        rows = await self.control.job_executions(job_id)
        for r in rows:
            key = (job_id, r["thing"], r.get("status") or "")
            if key not in self._details:
                try:
                    ex = await self.control.describe_execution(job_id, r["thing"])
                    self._details[key] = (execution_details(ex), failure_reason(ex))
                except FleetdeskError as exc:
                    text = f"({exc.message})"
                    self._details[key] = (text, text)
            r["details"], r["reason"] = self._details[key]
        return sorted(rows, key=lambda x: x["thing"])
