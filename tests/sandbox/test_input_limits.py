"""AWS's input rules and limits, sent with real boto3 (client-side validation off, so the
sandbox must refuse), raw signed HTTPS and MQTT: always a 4xx in AWS's shape, never a 500."""

from __future__ import annotations

import json
import uuid

import boto3
import pytest
import sandbox_http
from botocore.config import Config
from botocore.exceptions import ClientError

from fleetdesk.cloud.identity import create_device_identity

pytestmark = pytest.mark.slow

NO_CLIENT_CHECKS = Config(parameter_validation=False, retries={"max_attempts": 1})


@pytest.fixture
def raw_iot(sandbox):
    return boto3.client("iot", **sandbox.boto3_kwargs(), config=NO_CLIENT_CHECKS)


@pytest.fixture
def raw_data(sandbox):
    return boto3.client("iot-data", **sandbox.boto3_kwargs(), config=NO_CLIENT_CHECKS)


def _refused(call, code="InvalidRequestException", status=400) -> str:
    with pytest.raises(ClientError) as ei:
        call()
    err = ei.value.response
    assert (err["Error"]["Code"], err["ResponseMetadata"]["HTTPStatusCode"]) == (code, status), err["Error"]
    return err["Error"]["Message"]


BAD_NAMES = ["+", "#", "a b", "a\x00b", "x" * 129, "y" * 1000, "../../etc/passwd", "a/b", ""]


@pytest.mark.parametrize("name", BAD_NAMES, ids=lambda n: repr(n[:12]) + f"-{len(n)}")
def test_bad_thing_and_group_names_are_refused(raw_iot, name):
    if name:  # an empty name does not even route (AWS: 404/400); the rest must be a 400
        _refused(lambda: raw_iot.create_thing(thingName=name))
        _refused(lambda: raw_iot.create_thing_group(thingGroupName=name))
        _refused(lambda: raw_iot.create_thing_type(thingTypeName=name))
    assert name not in [t["thingName"] for t in raw_iot.list_things(maxResults=250)["things"]]


def test_name_length_boundary_and_other_names(raw_iot):
    ok = "n" * 120 + uuid.uuid4().hex[:8]
    assert raw_iot.create_thing(thingName=ok)["thingName"] == ok
    _refused(lambda: raw_iot.create_policy(policyName="bad name/", policyDocument="{}"))
    _refused(lambda: raw_iot.create_job(jobId="j" * 65, targets=["arn:aws:iot:us-east-1:1:thing/x"], document="{}"))
    _refused(lambda: raw_iot.list_things(maxResults=0))
    _refused(lambda: raw_iot.list_things(maxResults=251))


def test_policy_size_limit(raw_iot, sandbox):
    stmt = {"Effect": "Allow", "Action": "iot:Publish", "Resource": "arn:aws:iot:us-east-1:1:topic/" + "a" * 1900}
    fits = json.dumps({"Version": "2012-10-17", "Statement": [stmt]})
    assert len("".join(fits.split())) <= 2048
    raw_iot.create_policy(policyName=f"p-fits-{uuid.uuid4().hex[:6]}", policyDocument=fits)
    stmt["Resource"] += "b" * 200
    msg = _refused(lambda: raw_iot.create_policy(policyName=f"p-big-{uuid.uuid4().hex[:6]}",
                                                 policyDocument=json.dumps({"Statement": [stmt]})),
                   "MalformedPolicyException")
    assert "2048" in msg
    five_mb = json.dumps({"Statement": [stmt], "pad": "x" * (5 * 1024 * 1024)})
    _refused(lambda: raw_iot.create_policy(policyName="p-5mb", policyDocument=five_mb),
             "RequestEntityTooLargeException", 413)


def _job(raw_iot, iot_thing, **config):
    job_id = f"cfg-{uuid.uuid4().hex[:8]}"
    return job_id, (lambda: raw_iot.create_job(jobId=job_id, targets=[iot_thing], document='{"op": "x"}', **config))


@pytest.mark.parametrize("config", [
    {"jobExecutionsRolloutConfig": {"maximumPerMinute": -5}},
    {"jobExecutionsRolloutConfig": {"maximumPerMinute": 0}},
    {"jobExecutionsRolloutConfig": {"maximumPerMinute": 1001}},
    {"timeoutConfig": {"inProgressTimeoutInMinutes": -1}},
    {"timeoutConfig": {"inProgressTimeoutInMinutes": 10081}},
    {"presignedUrlConfig": {"roleArn": "arn:aws:iam::1:role/r", "expiresInSec": -100}},
    {"presignedUrlConfig": {"roleArn": "arn:aws:iam::1:role/r", "expiresInSec": 3601}},
    {"jobExecutionsRolloutConfig": {"exponentialRate": {"baseRatePerMinute": 5,
                                                        "rateIncreaseCriteria": {"numberOfNotifiedThings": 2}}}},
    {"jobExecutionsRolloutConfig": {"exponentialRate": {"baseRatePerMinute": 5, "incrementFactor": 9,
                                                        "rateIncreaseCriteria": {"numberOfNotifiedThings": 2}}}},
    {"abortConfig": {"criteriaList": [{"failureType": "FAILED", "action": "CANCEL", "thresholdPercentage": 101,
                                       "minNumberOfExecutedThings": 1}]}},
    {"abortConfig": {"criteriaList": [{"failureType": "FAILED", "action": "CANCEL", "thresholdPercentage": 50,
                                       "minNumberOfExecutedThings": 0}]}},
    {"jobExecutionsRetryConfig": {"criteriaList": [{"failureType": "FAILED", "numberOfRetries": 11}]}},
], ids=lambda c: json.dumps(c)[:60])
def test_out_of_range_job_configs_are_refused_and_no_job_is_made(raw_iot, iot, thing_name, config):
    thing_arn = iot.create_thing(thingName=thing_name)["thingArn"]
    job_id, call = _job(raw_iot, thing_arn, **config)
    _refused(call)
    _refused(lambda: iot.describe_job(jobId=job_id), "ResourceNotFoundException", 404)


@pytest.mark.parametrize("payload", [b'{"state": {"desired": {"t": NaN}}}', b'{"state": {"desired": {"t": Infinity}}}',
                                     b'{"state": {"desired": {"t": -Infinity}}}', b'{"state": {"desired": {"t": 1e309}}}'])
def test_shadow_numbers_that_are_not_json_are_refused(raw_data, iot, thing_name, payload):
    iot.create_thing(thingName=thing_name)
    raw_data.update_thing_shadow(thingName=thing_name, payload=b'{"state": {"desired": {"t": 1}}}')
    _refused(lambda: raw_data.update_thing_shadow(thingName=thing_name, payload=payload))
    body = raw_data.get_thing_shadow(thingName=thing_name)["payload"].read()
    assert json.loads(body, parse_constant=lambda c: pytest.fail(f"{c} in the stored shadow"))["state"]["desired"] == {"t": 1}


@pytest.mark.parametrize("depth, shadow_status", [(500, 400), (20_000, 400), (100_000, 413)])
def test_deep_documents_are_4xx_everywhere(raw_data, iot, sandbox, thing_name, depth, shadow_status):
    """Any nesting: a 400 (too deep) or 413 (too big: shadows hold 8 KB, bodies 256 KB), never a 500."""
    iot.create_thing(thingName=thing_name)
    deep = ('{"a":' * depth + "1" + "}" * depth)
    payload = ('{"state":{"desired":' + deep + "}}").encode()
    _refused(lambda: raw_data.update_thing_shadow(thingName=thing_name, payload=payload),
             "InvalidRequestException" if shadow_status == 400 else "RequestEntityTooLargeException", shadow_status)
    status, headers, body = sandbox_http.raw(sandbox, "POST", f"/things/{thing_name}-x",
                                             ('{"attributePayload":' + deep + "}").encode())
    expected = ("InvalidRequestException", 400) if len(deep) < 256 * 1024 else ("RequestEntityTooLargeException", 413)
    assert (headers["x-amzn-ErrorType"], status) == expected, body[:200]


def test_huge_bodies_are_413(raw_data, iot, sandbox, thing_name):
    iot.create_thing(thingName=thing_name)
    ten_mb = b'{"state": {"desired": {"x": "' + b"x" * (10 * 1024 * 1024) + b'"}}}'
    status, headers, _ = sandbox_http.raw(sandbox, "POST", f"/things/{thing_name}/shadow", ten_mb, service="iot-data")
    assert status == 413 and headers["x-amzn-ErrorType"] == "RequestEntityTooLargeException"
    _refused(lambda: raw_data.publish(topic="dt/x/big", payload=b"x" * (129 * 1024)),
             "RequestEntityTooLargeException", 413)


def test_deep_shadow_over_mqtt_is_rejected_not_silent(sandbox, iot, thing_name, devices):
    ident = create_device_identity(iot, thing_name)
    dev = devices(sandbox, ident)
    assert dev.connect(), dev.failure
    base = f"$aws/things/{thing_name}/shadow/update"
    dev.subscribe(base + "/rejected")
    deep = '{"a":' * 500 + "1" + "}" * 500
    dev.publish(base, ('{"state":{"reported":' + deep + '},"clientToken":"deep"}').encode())
    topic, payload = dev.receive(timeout=10)
    assert topic == base + "/rejected"
    assert json.loads(payload)["code"] == 400
    dev.publish(base, b'{"state":{"reported":{"t":NaN}}}')
    topic, payload = dev.receive(timeout=10)
    assert topic == base + "/rejected" and json.loads(payload)["code"] == 400
