"""OTA jobs: upload a firmware file, then create a job whose document carries its URL and SHA-256.

The file goes to the sandbox's file store, or to an S3 bucket on AWS; the job document
(``resources/jobs/ota.json`` shape) names it with the ``${aws:iot:s3-presigned-url:...}``
placeholder, which the service replaces with a time-limited HTTPS URL when a device fetches
its job. Devices download, check the SHA-256 and report the new ``firmware_version``.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from pathlib import Path
from typing import Iterable

from fleetdesk.cloud.control import ControlPlane
from fleetdesk.cloud.errors import ControlPlaneError
from fleetdesk.config import Profile

VERSION_RE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._+-]{0,31}$")


def ota_document(placeholder_url: str, sha256_hex: str, version: str) -> dict:
    """The job document devices act on."""
    return {"operation": "ota", "url": placeholder_url, "sha256": sha256_hex, "version": version}


async def upload_firmware(profile: Profile, data: bytes, key: str, *, bucket: str | None = None,
                          s3_client=None) -> str:
    """Store the image where jobs can reference it; returns the URL placeholder.

    Args:
        profile: sandbox -> the sandbox file store; aws -> ``bucket`` in S3.
        data: the image bytes.
        key: object key, e.g. ``firmware/fw-1.2.0.pkg``.
        bucket: S3 bucket (AWS profiles only).
        s3_client: a boto3 ``s3`` client (default: built from the profile's credentials).

    Raises:
        ControlPlaneError: no bucket for an AWS profile, or the upload failed.
    """
    if profile.kind == "sandbox":
        from fleetdesk.cloud.session import sandbox_endpoint
        from fleetdesk.sandbox import files

        state_dir = sandbox_endpoint(profile)["state_dir"]
        return await asyncio.to_thread(files.put, state_dir, key, data)
    if not bucket:
        raise ControlPlaneError("an OTA upload on AWS needs an S3 bucket", "set the bucket in Settings",
                                code="NoBucket")
    if s3_client is None:
        import boto3

        from fleetdesk.cloud.session import boto3_kwargs

        s3_client = boto3.client("s3", **boto3_kwargs(profile))
    try:
        await asyncio.to_thread(s3_client.put_object, Bucket=bucket, Key=key, Body=data)
    except Exception as exc:
        raise ControlPlaneError(f"upload to s3://{bucket}/{key} failed: {exc}",
                                "check the bucket name and the credentials' s3:PutObject right",
                                code=type(exc).__name__) from exc
    return "${aws:iot:s3-presigned-url:https://%s.s3.amazonaws.com/%s}" % (bucket, key)


async def create_ota_job(profile: Profile, control: ControlPlane, job_id: str, image: bytes | str | Path,
                         version: str, *, things: Iterable[str] = (), groups: Iterable[str] = (),
                         bucket: str | None = None, **job_options) -> dict:
    """Upload ``image`` and create the OTA job for things/groups.

    Args:
        profile: the active profile.
        control: control plane for CreateJob.
        job_id: unique job id.
        image: the firmware file (path or bytes).
        version: the version the devices will report after the update.
        things: target things.
        groups: target groups.
        bucket: S3 bucket (AWS only).
        **job_options: passed to :meth:`ControlPlane.create_job` (max_per_minute, abort_failed_percent...).

    Returns:
        The CreateJob answer plus ``document``.
    """
    if not VERSION_RE.match(version or ""):
        raise ControlPlaneError(f"bad firmware version {version!r}", "use e.g. 1.2.0 (letters, digits, . _ + -)",
                                code="InvalidRequestException")
    data = image if isinstance(image, bytes) else Path(image).read_bytes()
    if not data:
        raise ControlPlaneError("the firmware file is empty", "pick the built image", code="InvalidRequestException")
    digest = hashlib.sha256(data).hexdigest()
    url = await upload_firmware(profile, data, f"firmware/{job_id}/fw-{version}.bin", bucket=bucket)
    doc = ota_document(url, digest, version)
    out = await control.create_job(job_id, doc, things=things, groups=groups,
                                   description=f"OTA to {version}", **job_options)
    out["document"] = doc
    return out
