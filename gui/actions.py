"""Bulk actions on many things (async, no widgets): what the Fleet page's buttons run.

Each returns ``(ok_names, {name: error_text})`` so the page can say "set on 48/50, 2 failed:
..." instead of stopping at the first error.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from fleetdesk.errors import FleetdeskError


def parse_value(text: str) -> Any:
    """A desired value typed by a user: JSON if it parses (``true``, ``5000``, ``"x"``,
    ``{...}``), else the text as a string.
    """
    try:
        return json.loads(text)
    except ValueError:
        return text


async def set_desired(session, names, key: str, value: Any):
    """Set ``desired.<key> = value`` on every thing's classic shadow."""
    if not key or "." in key:
        raise FleetdeskError(f"desired key {key!r} is not valid", "give one top-level key such as on or refresh")
    from fleetdesk.cloud.desired import check_desired

    check_desired({key: value})  # a value the firmware refuses would start a refuse/re-report loop
    return _split(await session.shadows.update_many(list(names), desired={key: value}))


async def reboot(session, names):
    """Ask each thing to reboot: raise its desired ``reboot`` counter above what it reported."""
    fleet = session.fleet

    def desired(name: str) -> dict:
        t = fleet.things.get(name)
        current = 0
        if t is not None:
            for section in (t.reported, t.desired):
                v = section.get("reboot")
                if isinstance(v, int) and not isinstance(v, bool):
                    current = max(current, v)
        return {"reboot": current + 1}

    return _split(await session.shadows.update_many(list(names), desired=desired))


def _split(results: dict) -> tuple[list[str], dict[str, str]]:
    """``update_many``'s answers as (ok names, {name: error text}). Bulk shadow updates go
    through ``Shadows.update_many``: HTTPS and paced within IoT Core's per-connection quotas."""
    ok = sorted(n for n, r in results.items() if not isinstance(r, Exception))
    failed = {n: getattr(r, "message", None) or str(r) or type(r).__name__
              for n, r in results.items() if isinstance(r, Exception)}
    return ok, failed


def summary(what: str, ok: list[str], failed: dict[str, str]) -> str:
    """One line for the page: "reboot: 3/3 things" or with the first failures named."""
    total = len(ok) + len(failed)
    text = f"{what}: {len(ok)}/{total} things"
    if failed:
        first = "; ".join(f"{n}: {e}" for n, e in list(sorted(failed.items()))[:3])
        text += f", {len(failed)} failed ({first}{'…' if len(failed) > 3 else ''})"
    return text


async def fetch_shadows(session, names):
    """Load the classic shadow of things the fleet model has none for (404 = no shadow yet)."""
    from fleetdesk.cloud.errors import ShadowRejected

    results = await session.shadows.get_many(list(names))
    return _split({n: {} if isinstance(r, ShadowRejected) and r.code == 404 else r for n, r in results.items()})


def upload_firmware(profile, path: str, version: str) -> dict:
    """Put a firmware/OTA package where devices can fetch it; returns the OTA job document.

    The profile's cloud backend stores it (the sandbox file store, or S3 on AWS) through
    :func:`fleetdesk.cloud.ota.prepare_ota`. Blocking: run in a worker thread.

    Raises:
        FleetdeskError: unreadable file, bad version, or the upload failed.
    """
    from fleetdesk.cloud.ota import prepare_ota

    return asyncio.run(prepare_ota(profile, path, version))
