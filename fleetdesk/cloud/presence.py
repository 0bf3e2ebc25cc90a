"""Which devices are online: initial state from GetThingConnectivityData, then live
``$aws/events/presence/connected|disconnected/<clientId>`` events, applied to the fleet model.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable, Iterable

from fleetdesk.cloud.connection import Connection, Message
from fleetdesk.cloud.topics import PRESENCE_FILTER
from fleetdesk.cloud.fleet_state import FleetState

log = logging.getLogger(__name__)


class Presence:
    """Keeps ``FleetState.things[*].online`` current.

    Args:
        conn: the app's connection (must be allowed to subscribe ``$aws/events/presence/...``).
        fleet: the fleet model to update.
        control: optional :class:`fleetdesk.cloud.control.ControlPlane` for the initial state.
    """

    def __init__(self, conn: Connection, fleet: FleetState, control: Any = None) -> None:
        self.conn = conn
        self.fleet = fleet
        self.control = control
        self._remove: Callable | None = None
        self._listeners: list[Callable[[str, bool], Any]] = []

    def add_listener(self, fn: Callable[[str, bool], Any]) -> Callable[[], None]:
        """Call ``fn(thing, online)`` on the loop for every presence event."""
        self._listeners.append(fn)
        return lambda: self._listeners.remove(fn) if fn in self._listeners else None

    async def start(self, things: Iterable[str] = ()) -> None:
        """Subscribe to presence events first (so none is missed), then load the initial state
        of ``things`` from GetThingConnectivityData (concurrently, in worker threads)."""
        self._remove = await self.conn.subscribe(PRESENCE_FILTER, self._on_event, qos=1)
        names = list(things)
        if self.control is None or not names:
            return
        sem = asyncio.Semaphore(8)

        async def one(name: str) -> None:
            async with sem:
                try:
                    data = await self.control.connectivity(name)
                except Exception as exc:  # noqa: BLE001 - presence events still arrive; logged
                    log.debug("connectivity of %s: %s", name, exc)
                    return
            ts = _epoch(data.get("timestamp"))
            self.fleet.apply_connectivity(name, bool(data.get("connected")), ts,
                                          data.get("disconnectReason") or "")

        await asyncio.gather(*(one(n) for n in names))

    async def stop(self) -> None:
        if self._remove is not None:
            await self._remove()
            self._remove = None

    def _on_event(self, msg: Message) -> None:
        self.fleet.apply_presence(msg.topic, msg.payload)
        parts = msg.topic.split("/")
        if len(parts) == 5 and self._listeners:
            for fn in list(self._listeners):
                try:
                    fn(parts[4], parts[3] == "connected")
                except Exception:
                    log.exception("presence listener failed")


def _epoch(value: Any) -> float:
    """boto3 gives GetThingConnectivityData's timestamp as a datetime; raw JSON as epoch ms."""
    if value is None:
        return 0.0
    if hasattr(value, "timestamp"):
        return float(value.timestamp())
    try:
        return float(value) / 1000.0
    except (TypeError, ValueError):
        return 0.0
