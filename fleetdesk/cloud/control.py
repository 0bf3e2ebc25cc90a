"""The AWS IoT control plane (boto3 ``iot`` and ``iot-data``) as async calls.

boto3 blocks, so every call runs in a worker thread; paging is handled here (callers get
whole lists). Errors become :class:`ControlPlaneError` with the AWS error code and advice.
Works the same against the sandbox and real AWS: the clients come from the profile's cloud
backend (``get_cloud_backend(profile).control_plane()``).

Registry: :meth:`ControlPlane.list_things`, :meth:`create_thing`, groups, connectivity.
Jobs: :meth:`create_job`, :meth:`list_jobs`, :meth:`describe_job`, :meth:`cancel_job`,
executions.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Iterable

from fleetdesk.cloud.errors import ControlPlaneError

MAX_JOB_DOCUMENT = 32 * 1024

_ADVICE = {
    "ResourceNotFoundException": "check the name (fleetdesk things list / jobs list)",
    "ResourceAlreadyExistsException": "pick another name, or use the existing one",
    "InvalidRequestException": "check the arguments",
    "UnauthorizedException": "the credentials are not allowed to do this",
    "ThrottlingException": "slow down and retry",
}


def _client_error(exc: Exception, what: str) -> ControlPlaneError:
    code, message = "", str(exc)
    resp = getattr(exc, "response", None)
    if isinstance(resp, dict):
        err = resp.get("Error", {})
        code = err.get("Code", "") or ""
        message = err.get("Message", message) or message
    if not code:
        code = type(exc).__name__
    advice = _ADVICE.get(code, "check the profile's endpoint and credentials (Settings)")
    return ControlPlaneError(f"{what} failed: {code}: {message}", advice, code=code)


class ControlPlane:
    """Async facade over boto3 clients.

    Args:
        iot: a boto3 ``iot`` client.
        data: a boto3 ``iot-data`` client (named shadows), optional.
    """

    def __init__(self, iot: Any, data: Any = None) -> None:
        self.iot = iot
        self.data = data

    async def _call(self, what: str, fn: Any, **kwargs: Any) -> Any:
        def run() -> Any:
            try:
                return fn(**kwargs)
            except Exception as exc:  # botocore ClientError, EndpointConnectionError, SSLError...
                raise _client_error(exc, what) from exc

        return await asyncio.to_thread(run)

    async def _paged(self, what: str, op: str, key: str, **kwargs: Any) -> list:
        def run() -> list:
            out: list = []
            try:
                for page in self.iot.get_paginator(op).paginate(**kwargs):
                    out.extend(page.get(key, []))
            except Exception as exc:
                raise _client_error(exc, what) from exc
            return out

        return await asyncio.to_thread(run)

    # ------------------------------------------------------------------ things
    async def list_things(self) -> list[dict]:
        """Every thing (all pages): dicts with thingName, thingArn, attributes, version."""
        return await self._paged("ListThings", "list_things", "things", PaginationConfig={"PageSize": 250})

    async def describe_thing(self, name: str) -> dict:
        return await self._call(f"DescribeThing {name}", self.iot.describe_thing, thingName=name)

    async def create_thing(self, name: str, attributes: dict | None = None, groups: Iterable[str] = ()) -> dict:
        """Create a thing (idempotent for identical attributes) and add it to groups."""
        kwargs: dict = {"thingName": name}
        if attributes:
            kwargs["attributePayload"] = {"attributes": {str(k): str(v) for k, v in attributes.items()}}
        out = await self._call(f"CreateThing {name}", self.iot.create_thing, **kwargs)
        for g in groups:
            await self.add_to_group(name, g)
        return out

    async def delete_thing(self, name: str) -> None:
        await self._call(f"DeleteThing {name}", self.iot.delete_thing, thingName=name)

    async def list_groups(self) -> list[dict]:
        """Every thing group: dicts with groupName, groupArn."""
        return await self._paged("ListThingGroups", "list_thing_groups", "thingGroups")

    async def create_group(self, name: str, parent: str | None = None) -> dict:
        kwargs: dict = {"thingGroupName": name}
        if parent:
            kwargs["parentGroupName"] = parent
        return await self._call(f"CreateThingGroup {name}", self.iot.create_thing_group, **kwargs)

    async def add_to_group(self, thing: str, group: str) -> None:
        await self._call(f"AddThingToThingGroup {thing} -> {group}", self.iot.add_thing_to_thing_group,
                         thingName=thing, thingGroupName=group)

    async def groups_of(self, thing: str) -> list[str]:
        groups = await self._paged(f"ListThingGroupsForThing {thing}", "list_thing_groups_for_thing",
                                   "thingGroups", thingName=thing)
        return [g["groupName"] for g in groups]

    async def things_in_group(self, group: str) -> list[str]:
        return await self._paged(f"ListThingsInThingGroup {group}", "list_things_in_thing_group", "things",
                                 thingGroupName=group)

    async def connectivity(self, thing: str) -> dict:
        """GetThingConnectivityData: {connected, timestamp (ms), disconnectReason}."""
        out = await self._call(f"GetThingConnectivityData {thing}", self.iot.get_thing_connectivity_data,
                               thingName=thing)
        out.pop("ResponseMetadata", None)
        return out

    async def named_shadows(self, thing: str) -> list[str]:
        """Names of a thing's named shadows (all pages)."""
        if self.data is None:
            return []
        names: list[str] = []
        token = None
        while True:
            kwargs: dict = {"thingName": thing, "pageSize": 100}
            if token:
                kwargs["nextToken"] = token
            page = await self._call(f"ListNamedShadowsForThing {thing}", self.data.list_named_shadows_for_thing,
                                    **kwargs)
            names += page.get("results", [])
            token = page.get("nextToken")
            if not token:
                return names

    # ------------------------------------------------------------------ jobs
    async def _target_arns(self, things: Iterable[str], groups: Iterable[str], snapshot: bool) -> list[str]:
        arns = []
        for t in things:
            arns.append((await self.describe_thing(t))["thingArn"])
        for g in groups:
            desc = await self._call(f"DescribeThingGroup {g}", self.iot.describe_thing_group, thingGroupName=g)
            if snapshot and not await self.things_in_group(g):
                raise ControlPlaneError(
                    f"thing group {g!r} has no things: the job would target nobody",
                    "add things to the group first, or use --continuous so later members get the job",
                    code="EmptyGroup")
            arns.append(desc["thingGroupArn"])
        return arns

    async def create_job(self, job_id: str, document: dict | str, *, things: Iterable[str] = (),
                         groups: Iterable[str] = (), continuous: bool = False, description: str = "",
                         max_per_minute: int | None = None, abort_failed_percent: float | None = None,
                         abort_min_executed: int = 1, timeout_minutes: int | None = None,
                         presigned_role_arn: str | None = None) -> dict:
        """Create a job for things and/or groups.

        Args:
            job_id: unique job id.
            document: the job document (dict or JSON text, <= 32 KB).
            things: thing names to target.
            groups: thing-group names to target.
            continuous: CONTINUOUS target selection (things joining a group later get it).
            description: free text.
            max_per_minute: rollout rate.
            abort_failed_percent: cancel the job when this % of executions FAILED.
            abort_min_executed: executions needed before the abort criterion applies.
            timeout_minutes: in-progress timeout per execution.
            presigned_role_arn: AWS only: the IAM role that presigns ``${aws:iot:s3-presigned-url:...}``.

        Raises:
            ControlPlaneError: bad document, no targets, empty group, or the service refused.
        """
        text = document if isinstance(document, str) else json.dumps(document)
        try:
            json.loads(text)
        except ValueError as exc:
            raise ControlPlaneError(f"the job document is not valid JSON: {exc}",
                                    "fix the JSON (line/column above)", code="InvalidRequestException") from exc
        if len(text.encode()) > MAX_JOB_DOCUMENT:
            raise ControlPlaneError(f"the job document is {len(text.encode())} bytes (limit 32 KB)",
                                    "host large data elsewhere and put a URL in the document",
                                    code="InvalidRequestException")
        things, groups = list(things), list(groups)
        if not things and not groups:
            raise ControlPlaneError("a job needs at least one thing or group target", code="InvalidRequestException")
        kwargs: dict = {
            "jobId": job_id, "document": text,
            "targets": await self._target_arns(things, groups, snapshot=not continuous),
            "targetSelection": "CONTINUOUS" if continuous else "SNAPSHOT",
        }
        if description:
            kwargs["description"] = description
        if max_per_minute:
            kwargs["jobExecutionsRolloutConfig"] = {"maximumPerMinute": int(max_per_minute)}
        if abort_failed_percent is not None:
            kwargs["abortConfig"] = {"criteriaList": [{
                "failureType": "FAILED", "action": "CANCEL", "thresholdPercentage": float(abort_failed_percent),
                "minNumberOfExecutedThings": int(abort_min_executed)}]}
        if timeout_minutes:
            kwargs["timeoutConfig"] = {"inProgressTimeoutInMinutes": int(timeout_minutes)}
        if presigned_role_arn:
            kwargs["presignedUrlConfig"] = {"roleArn": presigned_role_arn, "expiresInSec": 3600}
        out = await self._call(f"CreateJob {job_id}", self.iot.create_job, **kwargs)
        out.pop("ResponseMetadata", None)
        return out

    async def list_jobs(self, status: str | None = None) -> list[dict]:
        kwargs = {"status": status} if status else {}
        return await self._paged("ListJobs", "list_jobs", "jobs", **kwargs)

    async def describe_job(self, job_id: str) -> dict:
        out = await self._call(f"DescribeJob {job_id}", self.iot.describe_job, jobId=job_id)
        return out.get("job", out)

    async def job_document(self, job_id: str) -> dict:
        out = await self._call(f"GetJobDocument {job_id}", self.iot.get_job_document, jobId=job_id)
        return json.loads(out.get("document") or "{}")

    async def cancel_job(self, job_id: str, *, force: bool = False, comment: str = "") -> dict:
        kwargs: dict = {"jobId": job_id, "force": force}
        if comment:
            kwargs["comment"] = comment
        out = await self._call(f"CancelJob {job_id}", self.iot.cancel_job, **kwargs)
        out.pop("ResponseMetadata", None)
        return out

    async def job_executions(self, job_id: str) -> list[dict]:
        """Executions of a job: [{thingArn, thing, status, ...}] (all pages)."""
        rows = await self._paged(f"ListJobExecutionsForJob {job_id}", "list_job_executions_for_job",
                                 "executionSummaries", jobId=job_id)
        for r in rows:
            arn = r.get("thingArn", "")
            r["thing"] = arn.rsplit("/", 1)[-1]
            summary = r.get("jobExecutionSummary") or {}
            r["status"] = summary.get("status")
        return rows

    async def watch_executions(self, job_id: str, interval: float = 2.0, *, until_done: bool = True):
        """Async iterator of execution changes for a live table: yields ``(thing, status, row)``
        whenever an execution is new or its status changed; polls ListJobExecutionsForJob every
        ``interval`` seconds; ends when the job is no longer IN_PROGRESS (if ``until_done``)."""
        seen: dict[str, str] = {}
        while True:
            for row in await self.job_executions(job_id):
                if seen.get(row["thing"]) != row["status"]:
                    seen[row["thing"]] = row["status"]
                    yield row["thing"], row["status"], row
            if until_done and (await self.describe_job(job_id)).get("status") != "IN_PROGRESS":
                return
            await asyncio.sleep(interval)

    async def describe_execution(self, job_id: str, thing: str) -> dict:
        out = await self._call(f"DescribeJobExecution {job_id}/{thing}", self.iot.describe_job_execution,
                               jobId=job_id, thingName=thing)
        return out.get("execution", out)

    async def cancel_execution(self, job_id: str, thing: str, *, force: bool = False) -> None:
        await self._call(f"CancelJobExecution {job_id}/{thing}", self.iot.cancel_job_execution,
                         jobId=job_id, thingName=thing, force=force)
