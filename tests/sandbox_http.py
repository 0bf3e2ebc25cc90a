"""Raw HTTPS against the sandbox control plane, signed as boto3 signs (botocore's SigV4Auth).

For tests that must send what boto3 would refuse to build (malformed JSON, huge bodies,
out-of-range values) or must see the raw answer. ``sign=False`` sends the request unsigned,
``secret``/``access_key`` override the credentials (attack tests).
"""

from __future__ import annotations

import http.client
import json
import ssl
from urllib.parse import urlsplit

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

SIGNING_NAMES = {"iot": "iot", "iot-data": "iotdata", "s3": "s3"}


def raw(info, method: str, path: str, body: bytes | None = None, *, service: str = "iot", sign: bool = True,
        access_key: str | None = None, secret: str | None = None, headers: dict | None = None,
        timestamp: str | None = None):
    """Send one request; returns (status, headers, body bytes)."""
    url = info.http_endpoint + path
    hdrs = {"Content-Type": "application/json", **(headers or {})}
    req = AWSRequest(method=method, url=url, data=body or b"", headers=hdrs)
    if sign:
        creds = Credentials(access_key or info.aws_access_key_id, secret or info.aws_secret_access_key)
        signer = SigV4Auth(creds, SIGNING_NAMES.get(service, service), info.region)
        if timestamp:  # add_auth's steps with our date (it always stamps the current time)
            req.context["timestamp"] = timestamp
            signer._modify_request_before_signing(req)
            sig = signer.signature(signer.string_to_sign(req, signer.canonical_request(req)), req)
            signer._inject_signature_to_request(req, sig)
        else:
            signer.add_auth(req)
    prepared = req.prepare()
    parts = urlsplit(prepared.url)
    conn = http.client.HTTPSConnection(parts.hostname, parts.port,
                                       context=ssl.create_default_context(cafile=info.ca_file), timeout=20)
    try:
        conn.request(method, parts.path + (f"?{parts.query}" if parts.query else ""), body=prepared.body,
                     headers=dict(prepared.headers.items()))
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read()
    finally:
        conn.close()


def error_code(headers) -> str | None:
    """The AWS error code of a rest-json error answer."""
    return headers.get("x-amzn-ErrorType")


def message(body: bytes) -> str:
    return json.loads(body).get("message", "")
