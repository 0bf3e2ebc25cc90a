"""Control-plane routes of AWS IoT Jobs (boto3 ``iot``) and the jobs file server.

CreateJob, DescribeJob, GetJobDocument, ListJobs, CancelJob, DeleteJob,
ListJobExecutionsForJob, ListJobExecutionsForThing, DescribeJobExecution,
CancelJobExecution; ``GET /files/<key>?X-Amz-...`` serves stored files to whoever holds
an unexpired, untampered presigned URL (403 otherwise); S3 PutObject/GetObject/DeleteObject
(boto3 ``s3`` client, path style) put files into the same store.
"""

from __future__ import annotations

import datetime as _dt
from urllib.parse import quote

from fleetdesk.sandbox import files
from fleetdesk.sandbox.awserror import AwsError
from fleetdesk.sandbox.control_plane import list_page, model_routes, running_service
from fleetdesk.sandbox.jobs_engine import JobsError
from fleetdesk.sandbox.presign import PresignError, verify


def _jobs(ctx):
    return running_service(ctx, "jobs", "jobs")


def _call(ctx, fn, *args, **kwargs):
    service = _jobs(ctx)
    try:
        return fn(service.engine, *args, **kwargs)
    except JobsError as exc:
        raise AwsError(exc.code, exc.message, exc.status) from exc
    finally:
        service.notify_changes()


def _document(ctx, p: dict) -> str | None:
    if p.get("document") is not None:
        return p["document"]
    source = p.get("documentSource")
    if not source:
        return None
    try:
        path = files.file_path(ctx.state_dir, files.key_of(source))
        return path.read_text()
    except FileNotFoundError:
        raise AwsError("InvalidRequestException", f"documentSource {source} does not exist in the sandbox file store") from None
    except Exception as exc:  # a bad name (SandboxError) or undecodable bytes
        raise AwsError("InvalidRequestException", f"documentSource {source} is unusable: {exc}") from exc


# Job configuration limits AWS enforces beyond what botocore's model states (its min/max,
# patterns and required members are checked for every API in control_plane.check_shape).
MAX_ROLLOUT_PER_MINUTE = 1000
IN_PROGRESS_TIMEOUT_MINUTES = (1, 10080)  # 1 minute .. 7 days


def check_job_config(p: dict) -> None:
    """400 for job configs AWS refuses that the model cannot express."""
    rollout = p.get("jobExecutionsRolloutConfig") or {}
    if rollout.get("maximumPerMinute") is not None and not 1 <= rollout["maximumPerMinute"] <= MAX_ROLLOUT_PER_MINUTE:
        raise AwsError("InvalidRequestException",
                       f"jobExecutionsRolloutConfig.maximumPerMinute must be 1..{MAX_ROLLOUT_PER_MINUTE}")
    if rollout.get("maximumPerMinute") is not None and rollout.get("exponentialRate"):
        raise AwsError("InvalidRequestException",
                       "jobExecutionsRolloutConfig takes maximumPerMinute or exponentialRate, not both")
    rate = rollout.get("exponentialRate")
    if rate:
        criteria = rate.get("rateIncreaseCriteria") or {}
        if len([k for k in ("numberOfNotifiedThings", "numberOfSucceededThings") if criteria.get(k)]) != 1:
            raise AwsError("InvalidRequestException", "exponentialRate.rateIncreaseCriteria needs exactly one of "
                                                      "numberOfNotifiedThings or numberOfSucceededThings")
    timeout = (p.get("timeoutConfig") or {}).get("inProgressTimeoutInMinutes")
    lo, hi = IN_PROGRESS_TIMEOUT_MINUTES
    if timeout is not None and not lo <= timeout <= hi:
        raise AwsError("InvalidRequestException", f"timeoutConfig.inProgressTimeoutInMinutes must be {lo}..{hi}")
    for c in (p.get("abortConfig") or {}).get("criteriaList") or []:
        if c.get("thresholdPercentage") is not None and not 0 < c["thresholdPercentage"] <= 100:
            raise AwsError("InvalidRequestException", "abortConfig thresholdPercentage must be > 0 and <= 100")


def create_job(ctx, request):
    p = request.params
    check_job_config(p)
    return _call(ctx, lambda e: e.create_job(p["jobId"], p, _document(ctx, p)))


def describe_job(ctx, request):
    return _call(ctx, lambda e: e.describe_job(request.params["jobId"]))


def get_job_document(ctx, request):
    return _call(ctx, lambda e: {"document": e.get_document(request.params["jobId"])})


def list_jobs(ctx, request):
    p = request.params
    return list_page(_call(ctx, lambda e: e.list_jobs(p.get("status"), p.get("targetSelection"))), p, "jobs")


def cancel_job(ctx, request):
    p = request.params
    return _call(ctx, lambda e: e.cancel_job(p["jobId"], bool(p.get("force")), p.get("reasonCode"), p.get("comment")))


def delete_job(ctx, request):
    p = request.params
    _call(ctx, lambda e: e.delete_job(p["jobId"], bool(p.get("force"))))
    return {}


def list_executions_for_job(ctx, request):
    p = request.params
    return list_page(_call(ctx, lambda e: e.list_executions_for_job(p["jobId"], p.get("status"))), p,
                     "executionSummaries")


def list_executions_for_thing(ctx, request):
    p = request.params
    return list_page(_call(ctx, lambda e: e.list_executions_for_thing(p["thingName"], p.get("status"), p.get("jobId"))),
                     p, "executionSummaries")


def describe_execution(ctx, request):
    p = request.params
    return _call(ctx, lambda e: e.describe_execution(p["jobId"], p["thingName"]))


def cancel_execution(ctx, request):
    p = request.params
    _call(ctx, lambda e: e.cancel_execution(p["jobId"], p["thingName"], bool(p.get("force")),
                                            p.get("expectedVersion"), p.get("statusDetails")))
    return {}


def serve_file(ctx, request):
    """GET /files/<key> with a presigned query: the file's bytes, or 403/404."""
    _jobs(ctx)
    secret = files.signing_secret(ctx.state_dir)
    query = "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in request.query.items())
    host = request.headers.get("Host", "")
    try:
        verify("GET", f"https://{host}", request.path, query, {"host": host},
               lambda ak: secret if ak == files.FILES_ACCESS_KEY else None,
               service="s3", region=ctx.region, now=_dt.datetime.now(_dt.timezone.utc))
    except PresignError as exc:
        raise AwsError("AccessDenied", f"Request refused: {exc}", 403) from exc
    key = request.path_params["key"]
    try:
        return 200, files.file_path(ctx.state_dir, key).read_bytes()
    except FileNotFoundError:
        raise AwsError("NoSuchKey", f"The specified key does not exist: {key}", 404) from None
    except Exception as exc:  # a bad key name
        raise AwsError("InvalidRequestException", str(exc)) from exc


def _dechunk(body: bytes) -> bytes:
    """Decode an ``aws-chunked`` body (``<hex>[;chunk-signature=..]\\r\\n<data>\\r\\n ... 0`` + trailers)."""
    out, pos = bytearray(), 0
    while True:
        eol = body.index(b"\r\n", pos)
        size = int(body[pos:eol].split(b";")[0], 16)
        pos = eol + 2
        if size == 0:
            return bytes(out)
        out += body[pos:pos + size]
        pos += size + 2


def _object_key(request) -> str:
    try:
        return files.store_key(request.path_params["bucket"], request.path_params["key"])
    except Exception as exc:  # SandboxError: bad name
        raise AwsError("InvalidRequestException", str(exc)) from exc


def s3_put_object(ctx, request):
    """S3 PutObject (path style) into the file store, so OTA tools upload as they do on AWS."""
    body = request.body
    encoding = request.headers.get("Content-Encoding", "")
    if "aws-chunked" in encoding or request.headers.get("x-amz-content-sha256", "").startswith("STREAMING-"):
        try:
            body = _dechunk(body)
        except ValueError as exc:
            raise AwsError("InvalidRequestException", f"malformed aws-chunked body: {exc}") from exc
    key = _object_key(request)
    path = files.file_path(ctx.state_dir, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(body)
    tmp.replace(path)
    return 200, b""


def s3_get_object(ctx, request):
    """S3 GetObject from the file store (SigV4-signed callers, e.g. boto3)."""
    try:
        return 200, files.file_path(ctx.state_dir, _object_key(request)).read_bytes()
    except FileNotFoundError:
        raise AwsError("NoSuchKey", "The specified key does not exist.", 404) from None


def s3_delete_object(ctx, request):
    """S3 DeleteObject."""
    files.file_path(ctx.state_dir, _object_key(request)).unlink(missing_ok=True)
    return 204, b""


_S3_OBJECT = r"^/(?P<bucket>[a-z0-9][a-z0-9.-]{1,61}[a-z0-9])/(?P<key>.+)$"

ROUTES = model_routes("iot", {
    "CreateJob": create_job,
    "DescribeJob": describe_job,
    "GetJobDocument": get_job_document,
    "ListJobs": list_jobs,
    "CancelJob": cancel_job,
    "DeleteJob": delete_job,
    "ListJobExecutionsForJob": list_executions_for_job,
    "ListJobExecutionsForThing": list_executions_for_thing,
    "DescribeJobExecution": describe_execution,
    "CancelJobExecution": cancel_execution,
}) + [
    ("s3", "GET", r"^/files/(?P<key>.+)$", serve_file),  # presigned, S3-scoped
    ("s3", "PUT", _S3_OBJECT, s3_put_object),
    ("s3", "GET", _S3_OBJECT, s3_get_object),
    ("s3", "DELETE", _S3_OBJECT, s3_delete_object),
]
