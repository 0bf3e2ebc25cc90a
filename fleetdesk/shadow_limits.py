"""AWS IoT Device Shadow document limits, in one place for both sides.

The app checks an edited state against them before sending (``cloud/shadows.parse_state_json``)
and the sandbox refuses what breaks them as IoT Core does (``sandbox/shadow_doc``). From the AWS IoT developer
guide: the desired and reported state hold at most 8 KB ("Diagnosing problems with shadows", 413),
JSON nests at most 6 levels and a clientToken is at most 64 bytes ("Device Shadow error messages", 400).
"""

from __future__ import annotations

from typing import Any

MAX_STATE_BYTES = 8 * 1024
MAX_DEPTH = 6
MAX_CLIENT_TOKEN_BYTES = 64


def state_depth(value: Any) -> int:
    """How many object levels ``value`` nests; lists add no level of their own (as IoT Core counts)."""
    if isinstance(value, dict):
        return 1 + max((state_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return max((state_depth(v) for v in value), default=0)
    return 0
