"""The sandbox's file store: what ``${aws:iot:s3-presigned-url:...}`` job placeholders point at.

Files live in ``<state_dir>/files/<key>``. A job document names one as
``${aws:iot:s3-presigned-url:https://<bucket>.s3.amazonaws.com/<key>}`` (any https URL: the
key is its path); when the document is handed to a device the placeholder becomes a
time-limited HTTPS URL to the sandbox's file server, SigV4-signed with a key kept in the
state dir. The server refuses expired or tampered URLs (403).

Upload with :func:`put` (Python), or with boto3's S3 client pointed at the control plane
(``boto3.client("s3", endpoint_url=<http_endpoint>, ...).put_object(Bucket="fleetdesk-sandbox",
Key=..., Body=...)``), exactly as an OTA tool uploads to S3 on AWS.
"""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

from fleetdesk.errors import SandboxError
from fleetdesk.paths import write_private

PLACEHOLDER_RE = re.compile(r"\$\{aws:iot:s3-presigned-url:([^}]+)\}")
KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,254}$")
FILES_ACCESS_KEY = "FDSANDBOXFILES"
BUCKET = "fleetdesk-sandbox"
BUCKET_HOST = f"{BUCKET}.s3.amazonaws.com"
VHOST_RE = re.compile(r"^([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])\.s3[.-]([a-z0-9-]+\.)?amazonaws\.com$")
PATH_STYLE_RE = re.compile(r"^s3([.-][a-z0-9-]+)?\.amazonaws\.com$")


def _check_key(key: str) -> str:
    key = key.lstrip("/")
    if not KEY_RE.match(key) or ".." in key.split("/"):
        raise SandboxError(f"bad file name {key!r}", "use letters, digits, '.', '_', '-' and '/' only")
    return key


def files_dir(state_dir: Path | str) -> Path:
    """``<state_dir>/files`` (created)."""
    path = Path(state_dir) / "files"
    path.mkdir(parents=True, exist_ok=True)
    return path


def put(state_dir: Path | str, key: str, data: bytes) -> str:
    """Store a file for jobs to reference; returns the placeholder to put in a job document.

    Args:
        state_dir: the sandbox state dir.
        key: file name (may contain '/').
        data: contents.

    Returns:
        ``${aws:iot:s3-presigned-url:https://fleetdesk-sandbox.s3.amazonaws.com/<key>}``.
    """
    key = _check_key(key)
    path = files_dir(state_dir) / key
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return placeholder(key)


def placeholder(key: str) -> str:
    """The job-document placeholder for a stored file."""
    return "${aws:iot:s3-presigned-url:https://%s/%s}" % (BUCKET_HOST, quote(_check_key(key)))


def store_key(bucket: str, key: str) -> str:
    """Where S3 object ``bucket``/``key`` lives in the store (the sandbox bucket is the root)."""
    key = key.lstrip("/")
    return _check_key(key if bucket == BUCKET else f"{bucket}/{key}")


def key_of(url: str) -> str:
    """The store key an S3-style URL names.

    ``https://fleetdesk-sandbox.s3.amazonaws.com/k`` and ``https://s3.<region>.amazonaws.com/
    fleetdesk-sandbox/k`` name ``k``; other buckets ``<bucket>/k``; any other URL (or a bare
    name) its path.
    """
    parts = urlsplit(url)
    if not parts.scheme:
        return _check_key(url.lstrip("/"))
    host, path = parts.hostname or "", unquote(parts.path).lstrip("/")
    m = VHOST_RE.match(host)
    if m:
        return store_key(m.group(1), path)
    if PATH_STYLE_RE.match(host) and "/" in path:
        bucket, _, rest = path.partition("/")
        return store_key(bucket, rest)
    return _check_key(path)


def file_path(state_dir: Path | str, key: str) -> Path:
    """Where a key is stored."""
    return files_dir(state_dir) / _check_key(key)


def signing_secret(state_dir: Path | str) -> str:
    """The file server's signing secret (made once per state dir, 0600)."""
    path = Path(state_dir) / "files-signing.key"
    if not path.exists():
        write_private(path, secrets.token_hex(32).encode())
    return path.read_text().strip()


def resolve(text: str, make_url) -> str:
    """Replace every presigned-URL placeholder in ``text`` with ``make_url(key)``."""
    return PLACEHOLDER_RE.sub(lambda m: make_url(key_of(m.group(1))), text)
