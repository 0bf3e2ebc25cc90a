"""Jobs service: the device side of AWS IoT Jobs over MQTT, plus persistence and timers.

Device topics (``$aws/things/<thing>/jobs/...``): ``get``, ``start-next``, ``<jobId>/get``
(``$next`` allowed), ``<jobId>/update`` in; their ``/accepted`` and ``/rejected`` replies,
``notify`` and ``notify-next`` out. The state machine lives in
:mod:`fleetdesk.sandbox.jobs_engine`; the control-plane routes (:mod:`api_jobs`) share the
same :class:`JobsService` through ``ctx.extras["jobs"]``. Documents handed to devices get
their ``${aws:iot:s3-presigned-url:...}`` placeholders replaced by time-limited URLs to
the sandbox's file server (``GET /files/<key>`` on the control plane).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fleetdesk.errors import SandboxError
from fleetdesk.sandbox import files
from fleetdesk.sandbox.jobs_engine import JobsEngine, JobsError
from fleetdesk.sandbox.presign import presign

if TYPE_CHECKING:
    from fleetdesk.sandbox.mqtt_link import MqttLink

log = logging.getLogger(__name__)

FILTERS = [
    "$aws/things/+/jobs/get",
    "$aws/things/+/jobs/start-next",
    "$aws/things/+/jobs/+/get",
    "$aws/things/+/jobs/+/update",
]
TICK_S = 1.0


class JobsStore:
    """Jobs and executions as JSON rows in ``<state>/jobs.db`` (SQLite, WAL)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute("CREATE TABLE IF NOT EXISTS jobs (id TEXT PRIMARY KEY, doc TEXT NOT NULL)")
            self.db.execute("CREATE TABLE IF NOT EXISTS execs (id TEXT PRIMARY KEY, job TEXT NOT NULL, "
                            "doc TEXT NOT NULL)")
        except sqlite3.DatabaseError as exc:
            raise SandboxError(f"the jobs store {path} is unusable: {exc}",
                               "restore it from a backup, or move it away to start with no jobs "
                               "(nothing was deleted)") from exc

    def save(self, kind: str, key: str, data: dict | None) -> None:
        if kind == "job":
            self.db.execute("INSERT OR REPLACE INTO jobs VALUES (?, ?)", (key, json.dumps(data)))
        elif kind == "exec":
            assert data is not None, "an execution is saved with its document"
            self.db.execute("INSERT OR REPLACE INTO execs VALUES (?, ?, ?)", (key, data["jobId"], json.dumps(data)))
        elif kind == "delete":
            self.db.execute("DELETE FROM jobs WHERE id=?", (key,))
            self.db.execute("DELETE FROM execs WHERE job=?", (key,))

    def load(self) -> tuple[list[dict], list[dict]]:
        try:
            jobs = [json.loads(r[0]) for r in self.db.execute("SELECT doc FROM jobs")]
            execs = [json.loads(r[0]) for r in self.db.execute("SELECT doc FROM execs")]
        except (sqlite3.DatabaseError, ValueError) as exc:
            raise SandboxError(f"the jobs store {self.path} is unusable: {exc}",
                               "restore it from a backup, or move it away to start with no jobs "
                               "(nothing was deleted)") from exc
        return jobs, execs

    def close(self) -> None:
        self.db.close()


class JobsService:
    """Engine + store + MQTT publisher for one sandbox.

    Args:
        ctx: the sandbox context (registry for targets, https port and state dir for files).
        publish: ``publish(topic, dict)``.
    """

    def __init__(self, ctx: Any, publish) -> None:
        self.ctx = ctx
        self._publish = publish
        self.store = JobsStore(Path(ctx.state_dir) / "jobs.db")
        self.engine = JobsEngine(ctx.account_id, ctx.region, self.expand_targets, self.store.save)
        self.engine.load(*self.store.load())
        self._last_next: dict[str, str | None] = {}
        self._last_pending: dict[str, frozenset] = {}
        self.link: MqttLink | None = None
        self._secret = files.signing_secret(ctx.state_dir)

    # ---- targets and documents ------------------------------------------------------------
    def expand_targets(self, targets: list[str]) -> list[str]:
        """Thing and thing-group ARNs -> thing names (groups recursively)."""
        out: list[str] = []
        for arn in targets:
            resource = arn.split(":", 5)[-1] if arn.startswith("arn:") else arn
            kind, _, name = resource.partition("/")
            try:
                if kind == "thing":
                    self.ctx.registry.describe_thing(name)
                    out.append(name)
                elif kind == "thinggroup":
                    out.extend(self.ctx.registry.things_in_group(name, recursive=True))
                else:
                    raise JobsError("InvalidRequestException", f"target {arn} is not a thing or thing group ARN")
            except JobsError:
                raise
            except Exception as exc:  # registry's not-found (AwsError) -> the AWS error
                code = getattr(exc, "code", "ResourceNotFoundException")
                raise JobsError(code, f"target {arn} not found", getattr(exc, "status", 404)) from exc
        return list(dict.fromkeys(out))

    def file_url(self, key: str, expires: int = 3600) -> str:
        """A presigned HTTPS URL to a stored file."""
        return presign(f"https://127.0.0.1:{self.ctx.https_port}/files/{key}", files.FILES_ACCESS_KEY,
                       self._secret, service="s3", region=self.ctx.region, expires=expires)

    def resolve(self, document: str, job: dict) -> str:
        expires = int((job.get("presignedUrlConfig") or {}).get("expiresInSec") or 3600)
        return files.resolve(document, lambda key: self.file_url(key, expires))

    # ---- notifications ------------------------------------------------------------------
    def notify_changes(self) -> None:
        """Publish ``notify`` / ``notify-next`` for every thing whose pending jobs changed."""
        changed = self.engine.take_changed()
        if not changed:
            return
        cork = getattr(self.link, "cork", None)
        with cork() if cork else contextlib.nullcontext():  # a fleet-wide job: one write
            self._notify(changed)

    def _notify(self, changed: set[str]) -> None:
        """AWS's rules: ``notify`` when an execution joins or leaves the thing's pending list,
        ``notify-next`` only when the job id of the next pending execution changes."""
        for thing in sorted(changed):
            now = int(time.time())
            in_progress, queued = self.engine.pending(thing)
            base = f"$aws/things/{thing}/jobs"
            pending = frozenset(s["jobId"] for s in in_progress + queued)
            if self._last_pending.get(thing) != pending:
                self._last_pending[thing] = pending
                jobs = {}
                if queued:
                    jobs["QUEUED"] = queued
                if in_progress:
                    jobs["IN_PROGRESS"] = in_progress
                self._publish(f"{base}/notify", {"timestamp": now, "jobs": jobs})
            nxt = self.engine.next_execution(thing)
            key = nxt["jobId"] if nxt else None
            if self._last_next.get(thing, "unset") != key:
                self._last_next[thing] = key
                msg: dict[str, Any] = {"timestamp": now}
                if nxt:
                    msg["execution"] = self.engine.execution_data(nxt, True, self.resolve)
                self._publish(f"{base}/notify-next", msg)

    # ---- MQTT requests ------------------------------------------------------------------
    def on_message(self, topic: str, payload: bytes) -> None:
        parts = topic.split("/")
        if len(parts) < 5 or parts[:2] != ["$aws", "things"] or parts[3] != "jobs":
            return
        thing, rest = parts[2], parts[4:]
        base = f"$aws/things/{thing}/jobs/" + "/".join(rest)
        token = None
        try:
            try:
                req = json.loads(payload) if payload.strip() else {}
            except ValueError:
                raise JobsError("InvalidJson", "The request payload is not valid JSON.") from None
            if not isinstance(req, dict):
                raise JobsError("InvalidJson", "The request payload must be a JSON object.")
            token = req.get("clientToken")
            try:
                reply = self._handle(thing, rest, req)
            except (ValueError, TypeError, KeyError, AttributeError) as exc:  # wrongly typed fields
                raise JobsError("InvalidRequest", f"The request is malformed: {exc}") from exc
            if reply is None:
                return
            reply["timestamp"] = int(time.time())
            if token is not None:
                reply["clientToken"] = token
            self._publish(f"{base}/accepted", reply)
        except JobsError as exc:
            err: dict[str, Any] = {"code": exc.code, "message": exc.message, "timestamp": int(time.time())}
            if token is not None:
                err["clientToken"] = token
            if exc.execution_state is not None:
                err["executionState"] = exc.execution_state
            self._publish(f"{base}/rejected", err)
        finally:
            self.notify_changes()

    def _handle(self, thing: str, rest: list[str], req: dict) -> dict | None:
        eng = self.engine
        if rest == ["get"]:
            in_progress, queued = eng.pending(thing)
            return {"inProgressJobs": in_progress, "queuedJobs": queued}
        if rest == ["start-next"]:
            ex = eng.start_next(thing, req.get("statusDetails"), req.get("stepTimeoutInMinutes"))
            return {"execution": eng.execution_data(ex, True, self.resolve)} if ex else {}
        if len(rest) == 2 and rest[1] == "get":
            ex = eng.device_describe(thing, rest[0])
            include = req.get("includeJobDocument", True) is not False
            return {"execution": eng.execution_data(ex, include, self.resolve)}
        if len(rest) == 2 and rest[1] == "update":
            if rest[0] == "$next":
                raise JobsError("InvalidRequest", "$next cannot be updated; name the job.")
            ex = eng.device_update(thing, rest[0], req)
            out: dict[str, Any] = {}
            if req.get("includeJobExecutionState"):
                out["executionState"] = {"status": ex["status"], "statusDetails": dict(ex.get("statusDetails") or {}),
                                         "versionNumber": ex["versionNumber"]}
            if req.get("includeJobDocument"):
                job = eng.jobs[ex["jobId"]]
                out["jobDocument"] = json.loads(self.resolve(job["document"], job))
            return out
        return None

    # ---- periodic and registry events ---------------------------------------------------
    async def ticker(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            try:
                self.engine.tick()
                self.notify_changes()
            except Exception:
                log.exception("jobs tick failed")

    def on_registry_change(self, change) -> None:
        member = change.details.get("member") if getattr(change, "kind", None) == "thing_group" else None
        if member not in ("added", "removed"):
            return
        thing = str(change.details.get("thing") or "")
        thing = thing.rsplit("/", 1)[-1] if thing.startswith("arn:") else thing
        if thing:
            if member == "added":
                self.engine.thing_joined_group(thing)
            else:
                self.engine.thing_left_group(thing)
            self.notify_changes()


class _Running:
    def __init__(self, service: JobsService, link, task: asyncio.Task, unlisten) -> None:
        self.service, self.link, self.task, self.unlisten = service, link, task, unlisten

    async def stop(self) -> None:
        self.unlisten()
        self.task.cancel()
        try:
            await self.task
        except asyncio.CancelledError:
            pass
        await self.link.stop()
        self.service.store.close()


async def start(ctx: Any) -> _Running:
    """Start the jobs service (``ctx.extras["jobs"]`` = the service)."""
    from fleetdesk.sandbox.mqtt_link import MqttLink

    box: dict[str, MqttLink] = {}
    service = JobsService(ctx, lambda t, p: box["link"].publish(t, p))
    link = MqttLink(ctx.internal_mqtt, "jobs", FILTERS, service.on_message)
    box["link"] = link
    service.link = link
    await link.start()
    ctx.extras["jobs"] = service
    unlisten = ctx.registry_changed.listen(service.on_registry_change)
    task = asyncio.create_task(service.ticker(), name="jobs-ticker")
    return _Running(service, link, task, unlisten)
