"""SigV4 header authentication for every control-plane request, with botocore's own signer.

AWS refuses a request that is not signed, signed with an unknown access key, or signed with
the wrong secret, before any API runs. The sandbox does the same at its one request
dispatch (:class:`~fleetdesk.sandbox.control_plane.ControlPlane`), so every route module
(present and future) is covered: the signature is recomputed with botocore's
``SigV4Auth`` (``S3SigV4Auth`` for ``s3``) over a request rebuilt from what arrived on the
wire (method, raw path, raw query, the headers the client listed in ``SignedHeaders``, the
body), compared with :func:`hmac.compare_digest`, and the ``X-Amz-Date`` must be within
15 minutes of now. No cryptography of our own: only the parsing of the Authorization header
is hand-written (it is the server side of what botocore writes).

Errors are AWS's, in its shapes (the control plane renders them):

* no Authorization header and no presigned query -> 403 ``MissingAuthenticationTokenException``
  (S3: ``AccessDenied``);
* an access key the sandbox does not know -> 403 ``UnrecognizedClientException``
  (S3: ``InvalidAccessKeyId``);
* a signature that does not match (wrong secret, tampered request) -> 403
  ``InvalidSignatureException`` (S3: ``SignatureDoesNotMatch``);
* a date outside the window -> 403 ``InvalidSignatureException`` "Signature expired"
  (S3: ``RequestTimeTooSkewed``);
* a malformed Authorization header -> 400 ``IncompleteSignatureException``.

Presigned query authentication (``X-Amz-Signature`` in the query, as the job file URLs use)
is checked by :func:`fleetdesk.sandbox.presign.verify`.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import hmac
import re
from typing import Callable
from urllib.parse import unquote

from botocore.auth import S3SigV4Auth, SigV4Auth
from botocore.awsrequest import AWSRequest, HTTPHeaders
from botocore.credentials import Credentials

from fleetdesk.sandbox.awserror import AwsError
from fleetdesk.sandbox.presign import PresignError, verify as verify_presigned

ALGORITHM = "AWS4-HMAC-SHA256"
MAX_SKEW_S = 15 * 60
_AUTH_RE = re.compile(r"^AWS4-HMAC-SHA256\s+(.*)$", re.S)
_HEX64 = re.compile(r"^[0-9a-f]{64}$")

MSG_MISSING = "Missing Authentication Token"
MSG_UNKNOWN_KEY = "The security token included in the request is invalid."
MSG_BAD_SIG = ("The request signature we calculated does not match the signature you provided. "
               "Check your AWS Secret Access Key and signing method. Consult the service documentation for details.")

# (iot-style code, S3 code) per failure
_CODES = {
    "missing": ("MissingAuthenticationTokenException", "AccessDenied"),
    "unknown": ("UnrecognizedClientException", "InvalidAccessKeyId"),
    "signature": ("InvalidSignatureException", "SignatureDoesNotMatch"),
    "skew": ("InvalidSignatureException", "RequestTimeTooSkewed"),
    "incomplete": ("IncompleteSignatureException", "AuthorizationHeaderMalformed"),
    "sha": ("InvalidSignatureException", "XAmzContentSHA256Mismatch"),
}


def _err(kind: str, service: str, message: str, status: int = 403) -> AwsError:
    iot_code, s3_code = _CODES[kind]
    return AwsError(s3_code if service == "s3" else iot_code, message, status)


class _Exact:
    """Mixin: sign exactly the headers the client listed (botocore drops some from its own list)."""

    def headers_to_sign(self, request):
        out = HTTPHeaders()
        for name, value in request.headers.items():
            out[name.lower()] = value
        return out


class _ExactSigV4(_Exact, SigV4Auth):
    pass


class _ExactS3SigV4(_Exact, S3SigV4Auth):
    pass


def parse_authorization(value: str, service: str) -> dict:
    """``Credential``, ``SignedHeaders`` and ``Signature`` of a SigV4 Authorization header.

    Raises:
        AwsError: 400 IncompleteSignatureException naming what is missing.
    """
    m = _AUTH_RE.match(value.strip())
    if not m:
        raise _err("incomplete", service, f"Authorization header requires the {ALGORITHM} algorithm "
                                          "(sign the request with SigV4, as boto3 does)", 400)
    fields = {}
    for part in m.group(1).split(","):
        key, sep, val = part.strip().partition("=")
        if sep:
            fields[key.strip()] = val.strip()
    for need in ("Credential", "SignedHeaders", "Signature"):
        if not fields.get(need):
            raise _err("incomplete", service, f"Authorization header requires '{need}' parameter.", 400)
    cred = fields["Credential"].split("/")
    if len(cred) != 5 or cred[4] != "aws4_request":
        raise _err("incomplete", service, "Authorization header requires a Credential of the form "
                                          "<access key>/<date>/<region>/<service>/aws4_request.", 400)
    return {"access_key": cred[0], "date": cred[1], "region": cred[2], "service": cred[3],
            "signed_headers": fields["SignedHeaders"].split(";"), "signature": fields["Signature"]}


def scope_service(headers, query: dict) -> str | None:
    """The SigV4 service name the request was signed for (header or presigned query), or None."""
    auth = headers.get("Authorization", "")
    m = re.search(r"Credential=[^/,]+/\d{8}/[^/,]+/([^/,]+)/aws4_request", auth)
    if m:
        return m.group(1)
    cred = query.get("X-Amz-Credential", "")
    parts = cred.split("/")
    return parts[3] if len(parts) == 5 else None


class SigV4Checker:
    """Checks the SigV4 signature of each control-plane request.

    Args:
        secret_for: the secret for an access key id, or None if the key is unknown.
        region: the sandbox region (a credential scoped to another one is refused, as AWS does).
        extra_query_secret: for presigned queries only: ``(access key, path) -> secret`` for
            keys that may sign URLs of some paths (the job file store's own key).
    """

    def __init__(self, secret_for: Callable[[str], str | None], region: str,
                 extra_query_secret: Callable[[str, str], str | None] | None = None) -> None:
        self.secret_for = secret_for
        self.region = region
        self.extra_query_secret = extra_query_secret or (lambda ak, path: None)

    def check(self, method: str, raw_path: str, raw_query: str, headers, body: bytes, service: str,
              now: _dt.datetime | None = None) -> str:
        """Verify one request; returns the access key it was signed with.

        Args:
            method: HTTP method.
            raw_path: the path as it arrived (still percent-encoded).
            raw_query: the query string as it arrived.
            headers: a case-insensitive mapping (aiohttp's CIMultiDict or a dict).
            body: the raw body.
            service: the API the request is for ("iot", "iot-data", "s3"), for the error codes.
            now: the current time (tests).

        Raises:
            AwsError: in AWS's codes (see the module docstring).
        """
        now = now or _dt.datetime.now(_dt.timezone.utc)
        auth = headers.get("Authorization")
        if not auth:
            if "X-Amz-Signature=" in raw_query:
                return self._check_presigned(method, raw_path, raw_query, headers, service, now)
            raise _err("missing", service, MSG_MISSING if service != "s3" else "Access Denied")
        fields = parse_authorization(auth, service)
        access_key = fields["access_key"]
        secret = self.secret_for(access_key)
        if secret is None:
            raise _err("unknown", service, MSG_UNKNOWN_KEY if service != "s3" else
                       "The AWS Access Key Id you provided does not exist in our records.")
        if headers.get("X-Amz-Security-Token"):
            raise _err("unknown", service, MSG_UNKNOWN_KEY)  # the sandbox issues no session tokens
        if fields["region"] != self.region:
            raise _err("signature", service, f"Credential should be scoped to a valid region, not "
                                             f"'{fields['region']}'. (the sandbox runs in {self.region})")
        stamp = headers.get("X-Amz-Date", "")
        try:
            signed_at = _dt.datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=_dt.timezone.utc)
        except ValueError:
            raise _err("incomplete", service, "Authorization header requires existence of either a "
                                              "'X-Amz-Date' or a 'Date' header.", 400) from None
        if not stamp.startswith(fields["date"]):
            raise _err("signature", service, "Date in Credential scope does not match the X-Amz-Date header.")
        skew = (now - signed_at).total_seconds()
        if abs(skew) > MAX_SKEW_S:
            fmt = "%Y%m%dT%H%M%SZ"
            if skew > 0:
                msg = (f"Signature expired: {stamp} is now earlier than "
                       f"{(now - _dt.timedelta(seconds=MAX_SKEW_S)).strftime(fmt)} ({now.strftime(fmt)} - 15 min.)")
            else:
                msg = (f"Signature not yet current: {stamp} is still later than "
                       f"{(now + _dt.timedelta(seconds=MAX_SKEW_S)).strftime(fmt)} ({now.strftime(fmt)} + 15 min.)")
            raise _err("skew", service, msg)
        sign_headers = HTTPHeaders()
        for name in fields["signed_headers"]:
            values = headers.getall(name, None) if hasattr(headers, "getall") else (
                [headers[name]] if name in headers else None)
            if not values:
                raise _err("signature", service, f"Signed header '{name}' is missing from the request.")
            for v in values:
                sign_headers[name] = v
        if "host" not in fields["signed_headers"]:
            raise _err("signature", service, "'Host' must be a signed header.")
        claimed = headers.get("X-Amz-Content-SHA256")
        if claimed and _HEX64.match(claimed) and not hmac.compare_digest(claimed, hashlib.sha256(body).hexdigest()):
            raise _err("sha", service, "The provided 'x-amz-content-sha256' header does not match what was computed.",
                       400)
        host = headers.get("Host", "")
        url = f"https://{host}{raw_path}" + (f"?{raw_query}" if raw_query else "")
        req = AWSRequest(method=method, url=url, headers=sign_headers, data=body)
        req.context["timestamp"] = stamp
        cls = _ExactS3SigV4 if fields["service"] == "s3" else _ExactSigV4
        signer = cls(Credentials(access_key, secret), fields["service"], fields["region"])
        expected = signer.signature(signer.string_to_sign(req, signer.canonical_request(req)), req)
        if not hmac.compare_digest(expected, fields["signature"]):
            raise _err("signature", service, MSG_BAD_SIG)
        return access_key

    def _check_presigned(self, method, raw_path, raw_query, headers, service, now) -> str:
        params = {}
        for part in raw_query.split("&"):
            k, _, v = part.partition("=")
            params[k] = unquote(v)
        parts = params.get("X-Amz-Credential", "").split("/")
        if len(parts) != 5:
            raise _err("incomplete", service, "X-Amz-Credential is malformed.", 400)
        access_key, cred_service = parts[0], parts[3]
        path = unquote(raw_path)

        def secret_for(ak: str) -> str | None:
            return self.secret_for(ak) or self.extra_query_secret(ak, path)

        if secret_for(access_key) is None:
            raise _err("unknown", service, MSG_UNKNOWN_KEY if service != "s3" else
                       "The AWS Access Key Id you provided does not exist in our records.")
        try:
            verify_presigned(method, f"https://{headers.get('Host', '')}", raw_path, raw_query,
                             {"host": headers.get("Host", ""), **{k: v for k, v in headers.items()}},
                             secret_for, service=cred_service, region=self.region, now=now)
        except PresignError as exc:
            text = str(exc)
            if "expired" in text or "future" in text:
                raise _err("skew", service, f"Request has expired or is not yet valid: {text}") from None
            raise _err("signature", service, f"{MSG_BAD_SIG} ({text})") from None
        return access_key
