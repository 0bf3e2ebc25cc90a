"""Jobs against a running sandbox: boto3 creates/targets/cancels, awsiotsdk IotJobsClientV2 runs the device side."""

from __future__ import annotations

import json
import ssl
import threading
import urllib.error
import urllib.request
import uuid

import pytest
from awsiot import ServiceStreamOptions, V2ServiceException, iotjobs

from fleetdesk.sandbox import files

from .conftest import result, rr_options

pytestmark = pytest.mark.slow


@pytest.fixture
def jobs(device):
    return iotjobs.IotJobsClientV2(device.client, rr_options())


def _group(iot, thing):
    name = f"g-{uuid.uuid4().hex[:8]}"
    arn = iot.create_thing_group(thingGroupName=name)["thingGroupArn"]
    if thing:
        iot.add_thing_to_thing_group(thingGroupName=name, thingName=thing)
    return name, arn


def test_group_job_notify_next_start_next_succeeded(device, jobs, iot):
    thing = device.thing
    events, got = [], threading.Event()
    subscribed = threading.Event()
    stream = jobs.create_next_job_execution_changed_stream(
        iotjobs.NextJobExecutionChangedSubscriptionRequest(thing_name=thing),
        ServiceStreamOptions(lambda ev: (events.append(ev), got.set()),
                             subscription_status_listener=lambda ev: subscribed.set()))
    stream.open()
    assert subscribed.wait(10)

    _, group_arn = _group(iot, thing)
    job_id = f"j-{uuid.uuid4().hex[:8]}"
    iot.create_job(jobId=job_id, targets=[group_arn], document=json.dumps({"operation": "reboot"}))
    assert got.wait(10), "no notify-next"
    assert events[-1].execution.job_id == job_id
    assert events[-1].execution.job_document == {"operation": "reboot"}

    pending = result(jobs.get_pending_job_executions(iotjobs.GetPendingJobExecutionsRequest(thing_name=thing)))
    assert [j.job_id for j in pending.queued_jobs] == [job_id] and pending.in_progress_jobs == []

    started = result(jobs.start_next_pending_job_execution(iotjobs.StartNextPendingJobExecutionRequest(
        thing_name=thing, status_details={"step": "downloading"}, step_timeout_in_minutes=5)))
    assert started.execution.status == "IN_PROGRESS" and started.execution.job_id == job_id
    assert iot.describe_job_execution(jobId=job_id, thingName=thing)["execution"]["status"] == "IN_PROGRESS"

    upd = result(jobs.update_job_execution(iotjobs.UpdateJobExecutionRequest(
        thing_name=thing, job_id=job_id, status="SUCCEEDED", status_details={"result": "ok"},
        expected_version=started.execution.version_number, include_job_execution_state=True)))
    assert upd.execution_state.status == "SUCCEEDED"

    job = iot.describe_job(jobId=job_id)["job"]
    assert job["status"] == "COMPLETED" and job["jobProcessDetails"]["numberOfSucceededThings"] == 1
    execs = iot.list_job_executions_for_job(jobId=job_id)["executionSummaries"]
    assert [e["jobExecutionSummary"]["status"] for e in execs] == ["SUCCEEDED"]
    by_thing = iot.list_job_executions_for_thing(thingName=thing)["executionSummaries"]
    assert by_thing[0]["jobId"] == job_id
    detail = iot.describe_job_execution(jobId=job_id, thingName=thing)["execution"]
    assert detail["statusDetails"]["detailsMap"] == {"result": "ok"}


def test_device_errors_version_mismatch_and_unknown_job(device, jobs, iot):
    thing = device.thing
    job_id = f"j-{uuid.uuid4().hex[:8]}"
    iot.create_job(jobId=job_id, targets=[iot.describe_thing(thingName=thing)["thingArn"]],
                   document=json.dumps({"operation": "config"}))
    with pytest.raises(V2ServiceException) as e:
        result(jobs.update_job_execution(iotjobs.UpdateJobExecutionRequest(
            thing_name=thing, job_id="no-such-job", status="SUCCEEDED")))
    assert e.value.modeled_error.code == "ResourceNotFound"
    with pytest.raises(V2ServiceException) as e:
        result(jobs.update_job_execution(iotjobs.UpdateJobExecutionRequest(
            thing_name=thing, job_id=job_id, status="IN_PROGRESS", expected_version=42)))
    assert e.value.modeled_error.code == "VersionMismatch"
    assert e.value.modeled_error.execution_state.version_number == 1


def test_cancel_force_and_lists(device, jobs, iot):
    thing = device.thing
    arn = iot.describe_thing(thingName=thing)["thingArn"]
    queued, running = (f"j-{uuid.uuid4().hex[:8]}" for _ in range(2))
    iot.create_job(jobId=running, targets=[arn], document="{}")
    iot.create_job(jobId=queued, targets=[arn], document="{}")
    result(jobs.start_next_pending_job_execution(iotjobs.StartNextPendingJobExecutionRequest(thing_name=thing)))
    iot.cancel_job(jobId=queued)
    assert iot.describe_job_execution(jobId=queued, thingName=thing)["execution"]["status"] == "CANCELED"
    iot.cancel_job(jobId=running)
    assert iot.describe_job_execution(jobId=running, thingName=thing)["execution"]["status"] == "IN_PROGRESS"
    iot.cancel_job(jobId=running, force=True)
    assert iot.describe_job_execution(jobId=running, thingName=thing)["execution"]["status"] == "CANCELED"
    assert iot.describe_job(jobId=running)["job"]["forceCanceled"] is True
    listed = {j["jobId"]: j["status"] for j in iot.list_jobs(status="CANCELED")["jobs"]}
    assert listed.get(queued) == "CANCELED" and listed.get(running) == "CANCELED"
    pending = result(jobs.get_pending_job_executions(iotjobs.GetPendingJobExecutionsRequest(thing_name=thing)))
    assert pending.queued_jobs == [] and pending.in_progress_jobs == []


def test_continuous_job_reaches_thing_added_later(device, iot, jobs):
    group, group_arn = _group(iot, None)
    job_id = f"c-{uuid.uuid4().hex[:8]}"
    iot.create_job(jobId=job_id, targets=[group_arn], targetSelection="CONTINUOUS", document="{}")
    assert iot.list_job_executions_for_job(jobId=job_id)["executionSummaries"] == []
    iot.add_thing_to_thing_group(thingGroupName=group, thingName=device.thing)
    execs = iot.list_job_executions_for_job(jobId=job_id)["executionSummaries"]
    assert [e["jobExecutionSummary"]["status"] for e in execs] == ["QUEUED"]
    iot.remove_thing_from_thing_group(thingGroupName=group, thingName=device.thing)
    execs = iot.list_job_executions_for_job(jobId=job_id)["executionSummaries"]
    assert [e["jobExecutionSummary"]["status"] for e in execs] == ["REMOVED"]


def test_bad_job_documents_are_invalid_request(iot, thing_name):
    from botocore.exceptions import ClientError

    arn = iot.create_thing(thingName=thing_name)["thingArn"]
    for doc in ("{bad json", json.dumps({"blob": "x" * (33 * 1024)})):
        with pytest.raises(ClientError) as e:
            iot.create_job(jobId=f"bad-{uuid.uuid4().hex[:6]}", targets=[arn], document=doc)
        assert e.value.response["Error"]["Code"] == "InvalidRequestException"


def test_presigned_placeholder_served_and_tampering_refused(device, jobs, iot, sandbox):
    blob = b"\x7fFIRMWARE" * 100
    placeholder = files.put(sandbox.state_dir, f"fw/{uuid.uuid4().hex[:6]}.bin", blob)
    job_id = f"ota-{uuid.uuid4().hex[:8]}"
    iot.create_job(jobId=job_id, targets=[iot.describe_thing(thingName=device.thing)["thingArn"]],
                   document=json.dumps({"operation": "ota", "url": placeholder}),
                   presignedUrlConfig={"roleArn": "arn:aws:iam::000000000000:role/x", "expiresInSec": 60})
    ex = result(jobs.start_next_pending_job_execution(
        iotjobs.StartNextPendingJobExecutionRequest(thing_name=device.thing))).execution
    url = ex.job_document["url"]
    assert url.startswith("https://") and "X-Amz-Signature=" in url
    ctx = ssl.create_default_context(cafile=sandbox.ca_file)
    assert urllib.request.urlopen(url, context=ctx, timeout=10).read() == blob
    for bad in (url.replace("X-Amz-Signature=", "X-Amz-Signature=0"), url.replace(".bin", ".bim"),
                url.replace("X-Amz-Expires=60", "X-Amz-Expires=600")):
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(bad, context=ctx, timeout=10)
        assert e.value.code == 403


def test_rollout_and_abort_honoured_in_the_sandbox(iot, observer):
    group, group_arn = _group(iot, None)
    things = [f"ra-{uuid.uuid4().hex[:6]}" for _ in range(4)]
    for t in things:
        iot.create_thing(thingName=t)
        iot.add_thing_to_thing_group(thingGroupName=group, thingName=t)
    slow = f"slow-{uuid.uuid4().hex[:6]}"
    iot.create_job(jobId=slow, targets=[group_arn], document="{}",
                   jobExecutionsRolloutConfig={"maximumPerMinute": 1})
    assert len(iot.list_job_executions_for_job(jobId=slow)["executionSummaries"]) == 1
    iot.cancel_job(jobId=slow)

    abort = f"abort-{uuid.uuid4().hex[:6]}"
    iot.create_job(jobId=abort, targets=[group_arn], document="{}", abortConfig={"criteriaList": [
        {"failureType": "FAILED", "action": "CANCEL", "thresholdPercentage": 50, "minNumberOfExecutedThings": 2}]})
    obs = observer([f"$aws/things/{t}/jobs/{abort}/update/accepted" for t in things[:2]])
    for t in things[:2]:  # two devices report FAILED (published as the things would)
        obs.publish(f"$aws/things/{t}/jobs/{abort}/update", json.dumps({"status": "FAILED"}).encode())
        obs.expect(f"$aws/things/{t}/jobs/{abort}/update/accepted")
    job = iot.describe_job(jobId=abort)["job"]
    assert job["status"] == "CANCELED" and job["reasonCode"] == "AbortCriteriaMet"
    assert job["jobProcessDetails"]["numberOfFailedThings"] == 2
    assert job["jobProcessDetails"]["numberOfCanceledThings"] == 2


def test_document_source_from_the_file_store(iot, sandbox, thing_name):
    from botocore.exceptions import ClientError

    arn = iot.create_thing(thingName=thing_name)["thingArn"]
    key = f"jobs/{uuid.uuid4().hex[:6]}.json"
    files.put(sandbox.state_dir, key, json.dumps({"operation": "config", "refresh": 2000}).encode())
    job_id = f"src-{uuid.uuid4().hex[:6]}"
    source = f"https://{files.BUCKET_HOST}/{key}"
    iot.create_job(jobId=job_id, targets=[arn], documentSource=source)
    assert json.loads(iot.get_job_document(jobId=job_id)["document"]) == {"operation": "config", "refresh": 2000}
    assert iot.describe_job(jobId=job_id)["documentSource"] == source
    with pytest.raises(ClientError) as e:
        iot.create_job(jobId=job_id + "x", targets=[arn], documentSource=f"https://{files.BUCKET_HOST}/missing.json")
    assert e.value.response["Error"]["Code"] == "InvalidRequestException"


def test_boto3_s3_upload_then_ota_placeholder(iot, sandbox, device, jobs):
    import boto3
    from botocore.config import Config

    s3 = boto3.client("s3", **sandbox.boto3_kwargs(), config=Config(s3={"addressing_style": "path"}))
    key = f"fw/{uuid.uuid4().hex[:6]}.bin"
    blob = bytes(range(256)) * 40
    s3.put_object(Bucket=files.BUCKET, Key=key, Body=blob)  # aws-chunked with a checksum trailer
    assert s3.get_object(Bucket=files.BUCKET, Key=key)["Body"].read() == blob
    job_id = f"s3-{uuid.uuid4().hex[:6]}"
    iot.create_job(jobId=job_id, targets=[iot.describe_thing(thingName=device.thing)["thingArn"]],
                   document=json.dumps({"url": f"${{aws:iot:s3-presigned-url:https://s3.amazonaws.com/"
                                               f"{files.BUCKET}/{key}}}"}))
    ex = result(jobs.start_next_pending_job_execution(
        iotjobs.StartNextPendingJobExecutionRequest(thing_name=device.thing))).execution
    ctx = ssl.create_default_context(cafile=sandbox.ca_file)
    assert urllib.request.urlopen(ex.job_document["url"], context=ctx, timeout=10).read() == blob


def test_cancel_execution_and_delete_job(iot, thing_name):
    from botocore.exceptions import ClientError

    arn = iot.create_thing(thingName=thing_name)["thingArn"]
    job_id = f"del-{uuid.uuid4().hex[:6]}"
    iot.create_job(jobId=job_id, targets=[arn], document="{}")
    with pytest.raises(ClientError) as e:
        iot.cancel_job_execution(jobId=job_id, thingName=thing_name, expectedVersion=7)
    assert e.value.response["Error"]["Code"] == "VersionConflictException"
    iot.cancel_job_execution(jobId=job_id, thingName=thing_name, expectedVersion=1)
    assert iot.describe_job_execution(jobId=job_id, thingName=thing_name)["execution"]["status"] == "CANCELED"
    assert iot.describe_job(jobId=job_id)["job"]["status"] == "COMPLETED"
    iot.delete_job(jobId=job_id)
    with pytest.raises(ClientError) as e:
        iot.describe_job(jobId=job_id)
    assert e.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert iot.list_job_executions_for_thing(thingName=thing_name)["executionSummaries"] == []
