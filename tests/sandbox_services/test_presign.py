"""SigV4 presigned URLs: botocore signs and checks; awscrt's WebSocket signing is accepted."""

from __future__ import annotations

import datetime as dt
from urllib.parse import urlsplit

import pytest
from awscrt import auth, http

from fleetdesk.errors import SandboxError
from fleetdesk.sandbox import files
from fleetdesk.sandbox.presign import PresignError, presign, verify

SECRETS = {"AKIDSANDBOX": "s3cr3t"}


def check(url, headers=None, *, service="s3", now=None, secrets=SECRETS):
    p = urlsplit(url)
    hdrs = {"host": p.netloc} if headers is None else headers
    return verify("GET", f"{p.scheme}://{p.netloc}", p.path, p.query, hdrs, secrets.get, service=service,
                  region="us-east-1", now=now)


def test_botocore_presigned_url_roundtrip_and_refusals():
    url = presign("https://127.0.0.1:8443/files/fw/app.bin", "AKIDSANDBOX", "s3cr3t", service="s3",
                  region="us-east-1", expires=60)
    assert check(url).access_key == "AKIDSANDBOX"
    with pytest.raises(PresignError, match="signature"):
        check(url.replace("app.bin", "evil.bin"))
    with pytest.raises(PresignError, match="signature"):
        check(url, secrets={"AKIDSANDBOX": "wrong"})
    with pytest.raises(PresignError, match="expired"):
        check(url, now=dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=120))
    with pytest.raises(PresignError, match="missing"):
        check(url.split("?")[0])
    with pytest.raises(PresignError, match="service"):
        check(url, service="iotdevicegateway")


def _crt_sign(host, secret, token=None, when=None):
    req = http.HttpRequest("GET", "/mqtt", http.HttpHeaders([("Host", host), ("Upgrade", "websocket"),
                                                             ("Connection", "Upgrade"),
                                                             ("Sec-WebSocket-Protocol", "mqtt")]))
    creds = auth.AwsCredentialsProvider.new_static("AKIDSANDBOX", secret, token)
    cfg = auth.AwsSigningConfig(
        algorithm=auth.AwsSigningAlgorithm.V4,
        signature_type=auth.AwsSignatureType.HTTP_REQUEST_QUERY_PARAMS,
        credentials_provider=creds, region="us-east-1", service="iotdevicegateway",
        omit_session_token=True, **({"date": when} if when else {}))
    signed = auth.aws_sign_request(req, cfg).result(5)
    path = signed.path
    if token:
        path += "&X-Amz-Security-Token=" + token
    return path, dict(signed.headers)


@pytest.mark.parametrize("token", [None, "sessiontoken123"])
def test_awscrt_websocket_signature_is_accepted_and_wrong_secret_refused(token):
    path, headers = _crt_sign("localhost", "s3cr3t", token)
    p, _, q = path.partition("?")
    v = verify("GET", "https://localhost", p, q, headers, SECRETS.get, service="iotdevicegateway")
    assert v.session_token == token
    path, headers = _crt_sign("localhost", "nope", token)
    p, _, q = path.partition("?")
    with pytest.raises(PresignError):
        verify("GET", "https://localhost", p, q, headers, SECRETS.get, service="iotdevicegateway")


def test_awscrt_old_signature_is_expired():
    old = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=2)
    path, headers = _crt_sign("localhost", "s3cr3t", when=old)
    p, _, q = path.partition("?")
    with pytest.raises(PresignError, match="expired"):
        verify("GET", "https://localhost", p, q, headers, SECRETS.get, service="iotdevicegateway")


def test_file_store_placeholders(tmp_path):
    ph = files.put(tmp_path, "fw/app-1.2.bin", b"\x00firmware")
    assert (tmp_path / "files" / "fw" / "app-1.2.bin").read_bytes() == b"\x00firmware"
    doc = '{"url": "%s", "other": "${aws:iot:s3-presigned-url:https://b.s3.amazonaws.com/x.bin}"}' % ph
    out = files.resolve(doc, lambda key: f"https://h/files/{key}")
    assert out == '{"url": "https://h/files/fw/app-1.2.bin", "other": "https://h/files/x.bin"}'
    with pytest.raises(SandboxError, match="bad file name '../escape'"):
        files.put(tmp_path, "../escape", b"x")
    assert not (tmp_path / "escape").exists()
