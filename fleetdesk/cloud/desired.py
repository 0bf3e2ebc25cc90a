"""What the device firmware accepts in ``desired``: the app checks before it sends.

The firmware (firmware/fd/shadow.py, firmware/fd/settings.py) refuses a bad desired value
and reports it in ``reported.error``; a value it refuses must never leave the app, because
each refusal is a shadow update that AWS bills and throttles. These rules restate the
firmware's validators for the app (a test runs both on the same values and fails if they
disagree). ``null`` always passes: it deletes the desired key, as AWS allows.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from fleetdesk.errors import FleetdeskError

REFRESH_MIN_MS = 1000  # firmware/fd/settings.py REFRESH_MIN
REFRESH_MAX_MS = 3_600_000  # REFRESH_MAX
DEFAULT_REFRESH_MS = 10_000  # DEFAULT_REFRESH
READ_ONLY = ("temperature", "humidity", "error", "chip", "mac", "uptime", "btnCount")  # fd/shadow.py


@dataclass(frozen=True)
class DesiredKey:
    """One key the firmware takes in ``desired``: a sample value and what is valid."""

    name: str
    default: Any
    valid: str


KEYS: dict[str, DesiredKey] = {k.name: k for k in (
    DesiredKey("on", True, "true or false (the LED)"),
    DesiredKey("refresh", DEFAULT_REFRESH_MS,
               f"a whole number of milliseconds from {REFRESH_MIN_MS} to {REFRESH_MAX_MS}"),
    DesiredKey("reboot", 1, "a whole number above the reported counter (the device reboots when it rises)"),
    DesiredKey("firmware_version", "1.1.0", "a version text such as 1.1.0, with firmware_url and firmware_sha256"),
    DesiredKey("firmware_url", "https://", "the HTTPS address of the OTA package"),
    DesiredKey("firmware_sha256", "", "the package's SHA-256 as text"),
)}


def default_text(key: str) -> str:
    """A value to propose for ``key`` in an input box, as JSON ("" for an unknown key)."""
    spec = KEYS.get(key.strip())
    return json.dumps(spec.default) if spec is not None else ""


def _is_int(v: Any) -> bool:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    return math.isfinite(v) and v == int(v)


def problem(key: str, value: Any) -> str | None:
    """Why the firmware would refuse ``desired[key] = value`` (None = it accepts it)."""
    if value is None:
        return None
    spec = KEYS.get(key)
    if key in READ_ONLY:
        return f"{key} is reported by the device and cannot be desired"
    if spec is None:
        return f"the firmware has no desired key {key!r}: it takes {', '.join(KEYS)}"
    bad = f"{key} must be {spec.valid}, not {json.dumps(value)}"
    if key == "on":
        ok = isinstance(value, bool) or (_is_int(value) and value in (0, 1))
    elif key == "refresh":
        ok = _is_int(value) and REFRESH_MIN_MS <= value <= REFRESH_MAX_MS
    elif key == "reboot":  # an integer in the JSON: the firmware refuses 5.0 as it does 1.5
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
    elif key == "firmware_version":
        ok = isinstance(value, str) and bool(value)
    else:
        ok = isinstance(value, str)
    return None if ok else bad


def check_desired(desired: dict[str, Any]) -> None:
    """Refuse a desired document the firmware would reject.

    Raises:
        FleetdeskError: naming the first bad key, the value given and what is valid.
    """
    for key, value in desired.items():
        why = problem(key, value)
        if why is not None:
            raise FleetdeskError(why, "nothing was sent; correct the value and send again")


def conflicting(changed: list[str], desired: dict[str, Any]) -> list[str]:
    """The paths of a 409's ``changed`` list that touch what the caller is sending.

    A 409 only says the version moved. When nobody else changed the desired keys being
    sent (the device only reported, say), the edit still means what the user meant and may
    be sent again over the new version; a changed desired key must go back to the user.
    """
    out = []
    for path in changed:
        section, _, rest = path.partition(".")
        if section != "desired":
            continue
        top = rest.split(".", 1)[0]
        if not rest or top in desired:
            out.append(path)
    return out
