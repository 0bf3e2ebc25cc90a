"""Device log stream: ``<thing>/logs`` records ``{"ts" (ms), "level", "msg", "mode"}``.

Keeps the last ``keep`` records per thing (for the Device page opening late) and hands new
ones to listeners on the loop. Malformed records are kept as raw text with level "?".
"""

from __future__ import annotations

import collections
import json
import time
from dataclasses import dataclass
from typing import Any, Callable

from fleetdesk.cloud.connection import Connection, Message
from fleetdesk.cloud.fanout import Fanout
from fleetdesk.cloud.subscription import Subscription
from fleetdesk.cloud.topics import LOGS_FILTER


@dataclass(frozen=True, slots=True)
class LogRecord:
    """One device log line."""

    thing: str
    ts: float
    level: str
    msg: str
    mode: str = ""


def parse_log(thing: str, payload: bytes, received: float | None = None) -> LogRecord:
    """Parse a log payload; anything unexpected becomes a level "?" record with the raw text."""
    received = time.time() if received is None else received
    try:
        doc = json.loads(payload)
        if not isinstance(doc, dict):
            raise ValueError
        ts = doc.get("ts")
        ts = float(ts) / 1000.0 if isinstance(ts, (int, float)) and ts > 1e11 else received
        return LogRecord(thing, ts, str(doc.get("level", "info")), str(doc.get("msg", "")), str(doc.get("mode", "")))
    except (ValueError, TypeError, UnicodeDecodeError):
        return LogRecord(thing, received, "?", payload[:500].decode("utf-8", "replace"))


class Logs:
    """Collects every device's log records.

    Args:
        conn: the app's connection.
        keep: records kept per thing.
    """

    def __init__(self, conn: Connection, keep: int = 500) -> None:
        self.conn = conn
        self.keep = keep
        self.records: dict[str, collections.deque] = {}
        self._records: Fanout[LogRecord] = Fanout("log")
        self._all = Subscription(conn, LOGS_FILTER, self._on_message, qos=0)

    async def start(self) -> None:
        await self._all.start()

    async def stop(self) -> None:
        await self._all.stop()

    async def watch(self, thing: str) -> Callable[[], Any]:
        """Make sure ``thing``'s records arrive (the Device page showing it); returns an async remover.

        With the fleet-wide stream started (no fleet index) every thing's records arrive
        already; otherwise this subscribes to ``<thing>/logs`` alone.
        """
        if self._all.active:
            async def nothing() -> None:
                return None

            return nothing
        from fleetdesk.cloud.topics import logs_topic

        return await self.conn.subscribe(logs_topic(thing), self._on_message, qos=0)

    def add_listener(self, fn: Callable[[LogRecord], Any]) -> Callable[[], None]:
        """Call ``fn(record)`` on the loop for every new record. Returns a remover."""
        return self._records.add_listener(fn)

    def recent(self, thing: str) -> list[LogRecord]:
        """The kept records of one thing, oldest first."""
        return list(self.records.get(thing, ()))

    def _on_message(self, msg: Message) -> None:
        thing = msg.topic[: -len("/logs")]
        if not thing or "/" in thing:
            return
        rec = parse_log(thing, msg.payload, msg.received)
        self.records.setdefault(thing, collections.deque(maxlen=self.keep)).append(rec)
        self._records.emit(rec)
