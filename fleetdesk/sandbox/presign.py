"""SigV4 presigned URLs: make them and check them, with botocore's signer (no crypto of our own).

Used twice in the sandbox: the MQTT-over-WebSockets front checks the URL an awsiotsdk/awscrt
client signed for service ``iotdevicegateway`` (``GET /mqtt``, ``X-Amz-Security-Token``
appended after signing), and the jobs file server hands out and checks time-limited
download URLs for ``${aws:iot:s3-presigned-url:...}`` placeholders.
"""

from __future__ import annotations

import datetime as _dt
import hmac
from dataclasses import dataclass
from typing import Callable
from urllib.parse import unquote

from botocore.auth import SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest, HTTPHeaders
from botocore.credentials import Credentials

ALGORITHM = "AWS4-HMAC-SHA256"
MAX_CLOCK_SKEW_S = 15 * 60
MAX_EXPIRES_S = 7 * 24 * 3600


class _ExactHeadersSigV4(SigV4Auth):
    """botocore's SigV4 signer, signing exactly the headers the client listed.

    botocore leaves some headers out of its own signatures (``connection``, ``user-agent``...);
    awscrt signs ``connection;host`` for the WebSocket handshake, so a checker must use the
    client's X-Amz-SignedHeaders list as is.
    """

    def headers_to_sign(self, request):
        out = HTTPHeaders()
        for name, value in request.headers.items():
            out[name.lower()] = value
        return out


class PresignError(Exception):
    """A presigned URL that must be refused (the message says why; never the secret)."""


@dataclass(frozen=True)
class Verified:
    """What a valid presigned URL proved."""

    access_key: str
    region: str
    service: str
    expires_at: _dt.datetime
    session_token: str | None


def presign(url: str, access_key: str, secret_key: str, *, service: str, region: str,
            expires: int = 3600, headers: dict | None = None, token: str | None = None,
            now: _dt.datetime | None = None) -> str:
    """Presign a GET URL with SigV4 query parameters (botocore's ``SigV4QueryAuth``).

    Args:
        url: the full https URL to sign.
        access_key: AWS access key id.
        secret_key: AWS secret key.
        service: SigV4 service name in the credential scope.
        region: SigV4 region.
        expires: validity in seconds.
        headers: extra headers to sign (``host`` is always signed).
        token: session token (signed in, as botocore does).
        now: signing time (tests); the current time if omitted.

    Returns:
        The URL with X-Amz-* query parameters.
    """
    creds = Credentials(access_key, secret_key, token)
    signer = SigV4QueryAuth(creds, service, region, expires=expires)
    req = AWSRequest(method="GET", url=url, headers=dict(headers or {}))
    if now is None:
        signer.add_auth(req)
    else:
        # add_auth always stamps the current time: reproduce its steps with ours.
        req.context["timestamp"] = now.strftime("%Y%m%dT%H%M%SZ")
        signer._modify_request_before_signing(req)
        canonical = signer.canonical_request(req)
        sts = signer.string_to_sign(req, canonical)
        signer._inject_signature_to_request(req, signer.signature(sts, req))
    return req.url


def _split_query(query: str) -> list[tuple[str, str]]:
    pairs = []
    for part in query.split("&") if query else []:
        key, _, value = part.partition("=")
        pairs.append((key, value))
    return pairs


def verify(method: str, scheme_host: str, path: str, query: str, headers: dict[str, str],
           secret_for: Callable[[str], str | None], *, service: str, region: str | None = None,
           now: _dt.datetime | None = None) -> Verified:
    """Check a SigV4 presigned request by re-signing it with botocore and comparing.

    Args:
        method: HTTP method.
        scheme_host: e.g. ``https://localhost`` (the host as it was signed).
        path: the request path.
        query: the raw (still percent-encoded) query string.
        headers: request headers (any case); the ones listed in X-Amz-SignedHeaders are used.
        secret_for: returns the secret key for an access key id, or None if unknown.
        service: required service name in the credential scope.
        region: required region (None accepts any).
        now: current time (tests).

    Returns:
        Verified details.

    Raises:
        PresignError: missing or malformed parameters, unknown key, wrong scope,
            expired or future-dated, or a signature that does not match.
    """
    now = now or _dt.datetime.now(_dt.timezone.utc)
    pairs = _split_query(query)
    params = {k: unquote(v) for k, v in pairs}
    for name in ("X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Signature", "X-Amz-SignedHeaders"):
        if name not in params:
            raise PresignError(f"missing {name}")
    if params["X-Amz-Algorithm"] != ALGORITHM:
        raise PresignError("unsupported X-Amz-Algorithm")
    parts = params["X-Amz-Credential"].split("/")
    if len(parts) != 5 or parts[4] != "aws4_request":
        raise PresignError("malformed X-Amz-Credential")
    access_key, date, cred_region, cred_service, _ = parts
    if cred_service != service:
        raise PresignError(f"credential scope is for service {cred_service!r}, not {service!r}")
    if region and cred_region != region:
        raise PresignError(f"credential scope is for region {cred_region!r}, not {region!r}")
    try:
        signed_at = _dt.datetime.strptime(params["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=_dt.timezone.utc)
    except ValueError:
        raise PresignError("malformed X-Amz-Date") from None
    if not params["X-Amz-Date"].startswith(date):
        raise PresignError("X-Amz-Date does not match the credential scope date")
    try:
        expires = int(params.get("X-Amz-Expires", str(MAX_CLOCK_SKEW_S)))
    except ValueError:
        raise PresignError("malformed X-Amz-Expires") from None
    if not 0 < expires <= MAX_EXPIRES_S:
        raise PresignError("X-Amz-Expires out of range")
    if (signed_at - now).total_seconds() > MAX_CLOCK_SKEW_S:
        raise PresignError("request is dated in the future")
    expires_at = signed_at + _dt.timedelta(seconds=expires)
    if now > expires_at:
        raise PresignError("presigned URL has expired")
    secret = secret_for(access_key)
    if secret is None:
        raise PresignError("unknown access key")

    lower = {k.lower(): v for k, v in headers.items()}
    signed = params["X-Amz-SignedHeaders"].split(";")
    sign_headers = {}
    for h in signed:
        if h not in lower:
            raise PresignError(f"signed header {h!r} missing from the request")
        sign_headers[h] = lower[h]
    signer = _ExactHeadersSigV4(Credentials(access_key, secret), service, cred_region)
    token = params.get("X-Amz-Security-Token")
    # awscrt appends the session token after signing (WebSockets); botocore signs it in.
    variants = [[p for p in pairs if p[0] != "X-Amz-Signature"]]
    if token is not None:
        variants.insert(0, [p for p in pairs if p[0] not in ("X-Amz-Signature", "X-Amz-Security-Token")])
    for kept in variants:
        q = "&".join(f"{k}={v}" for k, v in kept)
        req = AWSRequest(method=method, url=f"{scheme_host}{path}?{q}", headers=sign_headers)
        req.context["timestamp"] = params["X-Amz-Date"]
        canonical = signer.canonical_request(req)
        expected = signer.signature(signer.string_to_sign(req, canonical), req)
        if hmac.compare_digest(expected, params["X-Amz-Signature"]):
            return Verified(access_key, cred_region, cred_service, expires_at, token)
    raise PresignError("signature does not match")
