"""OTA jobs: upload a firmware file, then create a job whose document carries its URL and SHA-256.

The profile's backend stores the file (the sandbox's file store, or an S3 bucket on AWS:
:meth:`fleetdesk.cloud.backend.CloudBackend.upload_firmware`); the job document
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

from fleetdesk.cloud.backend import get_cloud_backend
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
        profile: the active profile (its backend stores the file: the sandbox file store,
            or ``bucket`` in S3 on AWS).
        data: the image bytes.
        key: object key, e.g. ``firmware/fw-1.2.0.pkg``.
        bucket: S3 bucket (AWS profiles; default ``profile.extra["ota_bucket"]``).
        s3_client: a boto3 ``s3`` client (default: built from the profile's credentials).

    Raises:
        ControlPlaneError: no bucket for an AWS profile, or the upload failed.
    """
    backend = get_cloud_backend(profile)
    return await asyncio.to_thread(backend.upload_firmware, data, key, bucket=bucket, s3_client=s3_client)


def read_image(path: str | Path) -> bytes:
    """A firmware file's bytes (refused when unreadable or empty)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ControlPlaneError(f"cannot read {path}: {exc.strerror or exc}", "pick the firmware file again",
                                code="InvalidRequestException") from exc
    if not data:
        raise ControlPlaneError(f"{path} is empty", "pick a built firmware package", code="InvalidRequestException")
    return data


def check_version(version: str) -> None:
    if not VERSION_RE.match(version or ""):
        raise ControlPlaneError(f"bad firmware version {version!r}", "use e.g. 1.2.0 (letters, digits, . _ + -)",
                                code="InvalidRequestException")


async def prepare_ota(profile: Profile, path: str | Path, version: str, *, bucket: str | None = None) -> dict:
    """Upload a firmware file and return the OTA job document for it (what the Jobs page puts
    in its editor): ``{"operation": "ota", "url": <placeholder>, "sha256", "version"}``.

    Raises:
        ControlPlaneError: bad version, unreadable/empty file, or the upload failed.
    """
    check_version(version)
    data = read_image(path)
    url = await upload_firmware(profile, data, f"firmware/{version}/{Path(path).name}", bucket=bucket)
    return ota_document(url, hashlib.sha256(data).hexdigest(), version)


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
    check_version(version)
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
