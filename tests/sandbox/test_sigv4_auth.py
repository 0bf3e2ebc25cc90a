"""Every control-plane request is SigV4-checked, as on AWS: raw HTTPS and real boto3 attacks refused."""

from __future__ import annotations

import datetime as dt
import json
import xml.etree.ElementTree as ET

import boto3
import pytest
import sandbox_http
from botocore.config import Config
from botocore.exceptions import ClientError

from fleetdesk.sandbox import files
from fleetdesk.sandbox.presign import presign

pytestmark = pytest.mark.slow


def _code(exc_info) -> str:
    return exc_info.value.response["Error"]["Code"]


def _cert_count(iot) -> int:
    return len(iot.list_certificates(pageSize=250)["certificates"])


def test_unsigned_request_cannot_mint_a_certificate(sandbox, iot):
    before = _cert_count(iot)
    status, headers, body = sandbox_http.raw(sandbox, "POST", "/keys-and-certificate?setAsActive=true", sign=False)
    assert status == 403
    assert headers["x-amzn-ErrorType"] == "MissingAuthenticationTokenException"
    assert sandbox_http.message(body) == "Missing Authentication Token"
    assert _cert_count(iot) == before


@pytest.mark.parametrize("service", ["iot", "iot-data"])
def test_boto3_with_a_wrong_secret_or_unknown_key_is_refused(sandbox, service):
    kw = sandbox.boto3_kwargs()
    wrong_secret = boto3.client(service, **{**kw, "aws_secret_access_key": kw["aws_secret_access_key"] + "x"})
    unknown_key = boto3.client(service, **{**kw, "aws_access_key_id": "AKIAUNKNOWNUNKNOWN00"})
    for client, code in ((wrong_secret, "InvalidSignatureException"), (unknown_key, "UnrecognizedClientException")):
        with pytest.raises(ClientError) as ei:
            if service == "iot":
                client.create_keys_and_certificate(setAsActive=True)
            else:
                client.publish(topic="dt/x/attack", payload=b"{}")
        assert _code(ei) == code
        assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_right_credentials_still_work_for_both_apis(sandbox, iot):
    assert "things" in iot.list_things()
    data = boto3.client("iot-data", **sandbox.boto3_kwargs())
    data.publish(topic="dt/auth-check/ok", payload=b"{}")


def test_tampered_body_and_stale_date_are_refused(sandbox):
    # signed for one body, another one sent
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    url = sandbox.http_endpoint + "/policies/p-tamper"
    req = AWSRequest(method="POST", url=url, data=b'{"policyDocument": "{}"}', headers={"Content-Type": "application/json"})
    SigV4Auth(Credentials(sandbox.aws_access_key_id, sandbox.aws_secret_access_key), "iot", sandbox.region).add_auth(req)
    status, headers, body = sandbox_http.raw(
        sandbox, "POST", "/policies/p-tamper", b'{"policyDocument": "{\\"Statement\\": []}"}', sign=False,
        headers={k: v for k, v in req.headers.items() if k.lower() != "content-length"})
    assert status == 403 and headers["x-amzn-ErrorType"] == "InvalidSignatureException"

    old = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=20)).strftime("%Y%m%dT%H%M%SZ")
    status, headers, body = sandbox_http.raw(sandbox, "GET", "/things", timestamp=old)
    assert status == 403 and headers["x-amzn-ErrorType"] == "InvalidSignatureException"
    assert "Signature expired" in sandbox_http.message(body)
    recent = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)).strftime("%Y%m%dT%H%M%SZ")
    assert sandbox_http.raw(sandbox, "GET", "/things", timestamp=recent)[0] == 200


def test_wrong_region_scope_is_refused(sandbox):
    kw = {**sandbox.boto3_kwargs(), "region_name": "eu-west-3"}
    with pytest.raises(ClientError) as ei:
        boto3.client("iot", **kw).list_things()
    assert _code(ei) == "InvalidSignatureException"


def test_file_store_put_needs_a_signature(sandbox):
    """The OTA attack: an unauthenticated PUT of a firmware image into the job file store."""
    status, headers, body = sandbox_http.raw(sandbox, "PUT", f"/{files.BUCKET}/fw/evil.bin", b"\x00evil",
                                             sign=False, headers={"Content-Type": "application/octet-stream"})
    assert status == 403
    assert ET.fromstring(body).findtext("Code") == "AccessDenied"
    assert not (files.files_dir(sandbox.state_dir) / "fw" / "evil.bin").exists()

    kw = sandbox.boto3_kwargs()
    s3 = boto3.client("s3", **{**kw, "aws_secret_access_key": kw["aws_secret_access_key"] + "x"},
                      config=Config(s3={"addressing_style": "path"}))
    with pytest.raises(ClientError) as ei:
        s3.put_object(Bucket=files.BUCKET, Key="fw/evil.bin", Body=b"evil")
    assert _code(ei) == "SignatureDoesNotMatch"
    assert not (files.files_dir(sandbox.state_dir) / "fw" / "evil.bin").exists()


def test_the_file_store_key_presigns_file_downloads_only(sandbox):
    """The key behind job-file URLs cannot be used to call the control plane."""
    secret = files.signing_secret(sandbox.state_dir)
    url = presign(f"{sandbox.http_endpoint}/things", files.FILES_ACCESS_KEY, secret, service="iot",
                  region=sandbox.region, expires=60)
    path = url[len(sandbox.http_endpoint):]
    status, headers, body = sandbox_http.raw(sandbox, "GET", path, sign=False)
    assert status == 403 and headers["x-amzn-ErrorType"] == "UnrecognizedClientException"
    assert "things" not in json.loads(body)
