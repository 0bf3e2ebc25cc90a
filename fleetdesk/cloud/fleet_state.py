"""The fleet model (Qt-free): one :class:`ThingState` per thing, fed by cloud events.

The cloud layer calls the ``apply_*`` methods on the asyncio loop as events arrive; the GUI
polls :meth:`FleetState.take_changes` on its refresh timer (1-5 Hz) and repaints only the
rows that changed — never one repaint per message. Bad payloads are counted in
:attr:`FleetState.diagnostics` (and the last few kept in :attr:`FleetState.problems`), never
raised.

Example::

    fleet = FleetState()
    fleet.apply_telemetry("dt/t1/env", b'{"temperature":21,"humidity":40,"seq":7}')
    fleet.apply_presence("$aws/events/presence/connected/t1", b'{"clientId":"t1","timestamp":1,...}')
    for name in fleet.take_changes():
        row = fleet.things[name]
"""

from __future__ import annotations

import collections
import json
import time
from dataclasses import dataclass, field
from typing import Any, Iterable

from fleetdesk.cloud.topics import parse_presence_topic, thing_from_telemetry_topic
from fleetdesk.store.telemetry import Sample, TelemetryError, parse_sample

COLUMNS = ("name", "online", "last_seen", "firmware", "shadow_version", "temperature", "humidity", "groups",
           "attributes")


@dataclass(slots=True)
class ThingState:
    """What the app knows about one thing.

    Attributes:
        name: thing name.
        online: True/False from presence; None = unknown yet.
        last_seen: epoch seconds of the last message or presence event from it.
        presence_ts: epoch seconds of the presence event that set ``online``.
        disconnect_reason: AWS ``disconnectReason`` of the last disconnect.
        firmware: ``reported.firmware_version`` from the classic shadow.
        shadow_version: classic shadow version.
        reported: the classic shadow's reported state (last seen).
        desired: the classic shadow's desired state (last seen).
        temperature: last temperature (deg C).
        humidity: last humidity (%).
        sample_ts: time of that reading.
        seq: last telemetry sequence number.
        missing: telemetry messages missing by sequence number since the app started.
        messages: telemetry messages received since the app started.
        groups: thing groups it belongs to.
        attributes: registry attributes.
    """

    name: str
    online: bool | None = None
    last_seen: float | None = None
    presence_ts: float = 0.0
    disconnect_reason: str = ""
    firmware: str | None = None
    shadow_version: int | None = None
    reported: dict = field(default_factory=dict)
    desired: dict = field(default_factory=dict)
    temperature: float | None = None
    humidity: float | None = None
    sample_ts: float | None = None
    seq: int | None = None
    missing: int = 0
    messages: int = 0
    groups: list[str] = field(default_factory=list)
    attributes: dict = field(default_factory=dict)

    def row(self) -> dict:
        """The fleet-table columns as plain data (JSON-serialisable)."""
        return {
            "name": self.name, "online": self.online, "last_seen": self.last_seen, "firmware": self.firmware,
            "shadow_version": self.shadow_version, "temperature": self.temperature, "humidity": self.humidity,
            "groups": list(self.groups), "attributes": dict(self.attributes), "missing": self.missing,
        }


class FleetState:
    """All things of a profile, updated from telemetry, presence, shadow and registry events.

    Args:
        problems_kept: how many recent malformed payloads to keep for the diagnostics view.
    """

    def __init__(self, problems_kept: int = 200) -> None:
        self.things: dict[str, ThingState] = {}
        self.diagnostics: collections.Counter = collections.Counter()
        self.problems: collections.deque = collections.deque(maxlen=problems_kept)
        self._changed: set[str] = set()

    # ------------------------------------------------------------------ access
    def thing(self, name: str) -> ThingState:
        """The state of ``name``, created on first use."""
        t = self.things.get(name)
        if t is None:
            t = self.things[name] = ThingState(name)
            self._changed.add(name)
        return t

    def take_changes(self) -> set[str]:
        """Names of things changed since the previous call (for the GUI's refresh tick)."""
        changed, self._changed = self._changed, set()
        return changed

    def rows(self, text: str = "", group: str | None = None) -> list[dict]:
        """Rows sorted by name, filtered by a substring of name/firmware/attributes and a group."""
        needle = text.lower().strip()
        out = []
        for name in sorted(self.things):
            t = self.things[name]
            if group and group not in t.groups:
                continue
            if needle:
                hay = " ".join([name, t.firmware or "", *t.groups, *map(str, t.attributes.values())]).lower()
                if needle not in hay:
                    continue
            out.append(t.row())
        return out

    def summary(self) -> dict:
        """Counts for a status bar: things, online, offline, unknown, malformed payloads."""
        online = sum(1 for t in self.things.values() if t.online)
        offline = sum(1 for t in self.things.values() if t.online is False)
        return {"things": len(self.things), "online": online, "offline": offline,
                "unknown": len(self.things) - online - offline,
                "malformed": sum(v for k, v in self.diagnostics.items() if k.startswith("malformed")),
                "missing": sum(t.missing for t in self.things.values())}

    def _problem(self, kind: str, thing: str | None, error: Any, payload: bytes | str | None = None) -> None:
        self.diagnostics[kind] += 1
        snippet = payload[:200] if isinstance(payload, (bytes, str)) else None
        if isinstance(snippet, bytes):
            snippet = snippet.decode("utf-8", "replace")
        self.problems.append({"at": time.time(), "kind": kind, "thing": thing, "error": str(error),
                              "payload": snippet})

    # ------------------------------------------------------------------ registry
    def apply_registry(self, things: Iterable[dict]) -> None:
        """Things from ListThings/DescribeThing (``thingName``, ``attributes``)."""
        for d in things:
            name = d.get("thingName") if isinstance(d, dict) else None
            if not name:
                self._problem("malformed_registry", None, "no thingName", json.dumps(d, default=str))
                continue
            t = self.thing(name)
            attrs = d.get("attributes") or {}
            if attrs != t.attributes:
                t.attributes = dict(attrs)
                self._changed.add(name)

    def set_groups(self, thing: str, groups: Iterable[str]) -> None:
        """Thing groups of ``thing``."""
        t = self.thing(thing)
        g = sorted(groups)
        if g != t.groups:
            t.groups = g
            self._changed.add(thing)

    def remove(self, thing: str) -> None:
        """Forget a deleted thing."""
        if self.things.pop(thing, None) is not None:
            self._changed.add(thing)

    # ------------------------------------------------------------------ telemetry
    def apply_telemetry(self, topic: str, payload: bytes | str, received: float | None = None) -> Sample | None:
        """Parse and apply one ``dt/<thing>/env`` message; malformed ones are counted, not raised."""
        thing = thing_from_telemetry_topic(topic)
        if thing is None:
            self._problem("malformed_topic", None, f"unexpected telemetry topic {topic!r}", payload)
            return None
        try:
            sample = parse_sample(thing, payload, received)
        except TelemetryError as exc:
            self._problem("malformed_telemetry", thing, exc, payload)
            return None
        self.apply_sample(sample)
        return sample

    def apply_sample(self, s: Sample) -> None:
        """Apply a parsed sample: last values, last seen, sequence-gap accounting."""
        t = self.thing(s.thing)
        t.messages += 1
        self.diagnostics["telemetry"] += 1
        if s.seq >= 0 and t.seq is not None:
            if s.seq > t.seq + 1:
                t.missing += s.seq - t.seq - 1
                self.diagnostics["seq_gaps"] += 1
            elif s.seq <= t.seq:
                self.diagnostics["seq_restarts_or_duplicates"] += 1
        if s.seq >= 0:
            t.seq = s.seq
        if t.sample_ts is None or s.ts >= t.sample_ts:
            t.temperature, t.humidity, t.sample_ts = s.temperature, s.humidity, s.ts
        seen = s.received or s.ts
        if t.last_seen is None or seen > t.last_seen:
            t.last_seen = seen
        self._changed.add(s.thing)

    def apply_samples(self, samples: Iterable[Sample]) -> None:
        for s in samples:
            self.apply_sample(s)

    # ------------------------------------------------------------------ presence
    def apply_presence(self, topic: str, payload: bytes | str | dict) -> None:
        """Apply ``$aws/events/presence/connected|disconnected/<clientId>`` (AWS payload)."""
        parsed = parse_presence_topic(topic)
        try:
            doc = payload if isinstance(payload, dict) else json.loads(payload)
            if not isinstance(doc, dict) or parsed is None:
                raise ValueError("not a presence event")
            event = doc.get("eventType") or parsed[0]
            if event not in ("connected", "disconnected"):
                raise ValueError(f"unknown eventType {event!r}")
            client = doc.get("clientId") or parsed[1]
            ts = float(doc.get("timestamp", 0)) / 1000.0
        except (ValueError, TypeError) as exc:
            self._problem("malformed_presence", parsed[1] if parsed else None, exc,
                          payload if not isinstance(payload, dict) else json.dumps(payload))
            return
        self.apply_connectivity(client, event == "connected", ts, doc.get("disconnectReason") or "")

    def apply_connectivity(self, thing: str, connected: bool, ts: float | None, reason: str = "") -> None:
        """Set online/offline; an event older than the one already applied is ignored."""
        t = self.thing(thing)
        ts = ts or 0.0
        if ts and ts < t.presence_ts:
            self.diagnostics["presence_out_of_order"] += 1
            return
        t.presence_ts = ts
        if t.online != connected or t.disconnect_reason != reason:
            t.online = connected
            t.disconnect_reason = "" if connected else reason
            self._changed.add(thing)
        if ts and (t.last_seen is None or ts > t.last_seen):
            t.last_seen = ts
            self._changed.add(thing)

    # ------------------------------------------------------------------ shadow
    def apply_shadow(self, thing: str, doc: dict | bytes | str, name: str | None = None) -> None:
        """Apply a classic-shadow document (get/accepted reply, or ``current`` of /documents).

        Named shadows only update ``last_seen``-free counters; the table shows the classic one.
        """
        try:
            d = doc if isinstance(doc, dict) else json.loads(doc)
            if not isinstance(d, dict):
                raise ValueError("not a JSON object")
            if "current" in d and isinstance(d["current"], dict):
                d = d["current"]
            state = d.get("state") or {}
            if not isinstance(state, dict):
                raise ValueError("state is not an object")
            version = d.get("version")
            if version is not None and not isinstance(version, int):
                raise ValueError(f"version is not an integer: {version!r}")
        except (ValueError, TypeError) as exc:
            self._problem("malformed_shadow", thing, exc, doc if not isinstance(doc, dict) else json.dumps(doc))
            return
        if name:
            self.diagnostics["named_shadow_events"] += 1
            return
        t = self.thing(thing)
        if version is not None and t.shadow_version is not None and version < t.shadow_version:
            return  # stale
        if version is not None:
            t.shadow_version = version
        reported = state.get("reported")
        desired = state.get("desired")
        if isinstance(reported, dict):
            t.reported = reported
            fw = reported.get("firmware_version")
            if fw is not None:
                t.firmware = str(fw)
        if isinstance(desired, dict):
            t.desired = desired
        self._changed.add(thing)

    def apply_shadow_deleted(self, thing: str) -> None:
        t = self.thing(thing)
        t.shadow_version = None
        t.reported, t.desired = {}, {}
        self._changed.add(thing)
