"""MQTT topic names used by devices, the app and AWS IoT, and filter matching.

AWS IoT reserves ``$aws/...``; a ``#`` or ``+`` at the first level never matches a topic
that starts with ``$`` (MQTT 3.1.1/5 rule 4.7.2), so the app subscribes to those explicitly.
"""

from __future__ import annotations

TELEMETRY_FILTER = "dt/+/env"
PRESENCE_FILTER = "$aws/events/presence/+/+"
RPC_RESPONSE_FILTER = "+/rpc/resp"
LOGS_FILTER = "+/logs"


def telemetry_topic(thing: str) -> str:
    """Topic a device publishes DHT11 readings to."""
    return f"dt/{thing}/env"


def rpc_topic(thing: str) -> str:
    """Topic a device listens on for RPC requests."""
    return f"{thing}/rpc"


def rpc_response_topic(thing: str) -> str:
    """Topic a device answers RPC requests on."""
    return f"{thing}/rpc/resp"


def logs_topic(thing: str) -> str:
    """Topic a device writes its log lines to."""
    return f"{thing}/logs"


def shadow_prefix(thing: str, name: str | None = None) -> str:
    """``$aws/things/<thing>/shadow`` or ``.../shadow/name/<name>`` for a named shadow."""
    base = f"$aws/things/{thing}/shadow"
    return f"{base}/name/{name}" if name else base


def shadow_filters() -> list[str]:
    """Filters covering every reply and event of every thing's classic and named shadows."""
    out = []
    for op in ("get", "update", "delete"):
        out.append(f"$aws/things/+/shadow/{op}/+")
        out.append(f"$aws/things/+/shadow/name/+/{op}/+")
    return out


def parse_shadow_topic(topic: str) -> tuple[str, str | None, str, str] | None:
    """Split a shadow topic into (thing, shadow name or None, operation, suffix).

    ``$aws/things/t1/shadow/name/cfg/update/delta`` -> ("t1", "cfg", "update", "delta").
    Returns None for anything that is not a shadow reply/event topic.
    """
    parts = topic.split("/")
    if len(parts) < 6 or parts[0] != "$aws" or parts[1] != "things" or parts[3] != "shadow":
        return None
    thing = parts[2]
    if parts[4] == "name":
        if len(parts) != 8:
            return None
        return thing, parts[5], parts[6], parts[7]
    if len(parts) != 6:
        return None
    return thing, None, parts[4], parts[5]


def parse_presence_topic(topic: str) -> tuple[str, str] | None:
    """``$aws/events/presence/connected/<clientId>`` -> ("connected", clientId)."""
    parts = topic.split("/", 4)
    if len(parts) != 5 or parts[:3] != ["$aws", "events", "presence"]:
        return None
    return parts[3], parts[4]


def thing_from_telemetry_topic(topic: str) -> str | None:
    """``dt/<thing>/env`` -> thing (None if the topic has another shape)."""
    parts = topic.split("/")
    if len(parts) == 3 and parts[0] == "dt" and parts[2] == "env" and parts[1]:
        return parts[1]
    return None


def matches(topic_filter: str, topic: str) -> bool:
    """True if ``topic`` matches the MQTT ``topic_filter`` (``+`` and ``#`` wildcards)."""
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    fparts = topic_filter.split("/")
    tparts = topic.split("/")
    for i, f in enumerate(fparts):
        if f == "#":
            return True
        if i >= len(tparts):
            return False
        if f != "+" and f != tparts[i]:
            return False
    return len(fparts) == len(tparts)


def covers(broad: str, narrow: str) -> bool:
    """True if every topic matching filter ``narrow`` also matches filter ``broad``."""
    if narrow.startswith("$") and broad[:1] in ("+", "#"):
        return False
    bparts, nparts = broad.split("/"), narrow.split("/")
    for i, b in enumerate(bparts):
        if b == "#":
            return True
        if i >= len(nparts):
            return False
        n = nparts[i]
        if n == "#":
            return False
        if b != "+" and (n == "+" or b != n):
            return False
    return len(bparts) == len(nparts)
