"""Which devices are online: initial state from GetThingConnectivityData, then live
``$aws/events/presence/connected|disconnected/<clientId>`` events, applied to the fleet model.

Scoped (a session on the fleet index): no fleet-wide subscription. At 100,000 devices the
fleet's presence events alone can pass IoT Core's 100 publishes/s per connection; the index
has every thing's ``connectivity.connected`` (the Fleet page re-reads it on a timer and in its
tiles), and :meth:`Presence.follow_only` follows the few things a page shows, at most
:data:`FOLLOW_MAX` filters, so the app stays within the 50 subscriptions a connection may hold.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable, Iterable

from fleetdesk.cloud.connection import Connection, Message
from fleetdesk.cloud.topics import PRESENCE_FILTER
from fleetdesk.cloud.fleet_state import FleetState

log = logging.getLogger(__name__)

# Per-thing presence filters. IoT Core allows 50 subscriptions per connection; a scoped session's
# others: Shadows follows up to 16 things (2 filters each: 32), RPC replies, the open device's
# telemetry and logs (3); 3 are left spare.
FOLLOW_MAX = 12


def presence_filter(thing: str) -> str:
    """``$aws/events/presence/+/<thing>``: one device's connected and disconnected events (its client id is its name)."""
    return f"$aws/events/presence/+/{thing}"


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
        self.scoped = False  # True: no fleet-wide filter; follow_only() picks the things
        self._followed: dict[str, Callable] = {}
        self._page: list[str] = []          # follow_only's names
        self._pins: dict[str, int] = {}     # watch()'s things and how many watch each
        self._follow_lock = asyncio.Lock()

    def add_listener(self, fn: Callable[[str, bool], Any]) -> Callable[[], None]:
        """Call ``fn(thing, online)`` on the loop for every presence event."""
        self._listeners.append(fn)
        return lambda: self._listeners.remove(fn) if fn in self._listeners else None

    async def start(self, things: Iterable[str] = ()) -> None:
        """Subscribe to presence events first (so none is missed), then load the initial state
        of ``things`` from GetThingConnectivityData (concurrently, in worker threads).
        Scoped: nothing is subscribed here (see :meth:`follow_only`)."""
        if not self.scoped:
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

    @property
    def followed(self) -> list[str]:
        """The things whose presence events a scoped session receives (pinned first, then the page's in its order)."""
        order = list(dict.fromkeys([*self._pins, *self._page]))
        return [n for n in order if n in self._followed] + [n for n in self._followed if n not in order]

    async def follow_only(self, names: Iterable[str]) -> list[str]:
        """Scoped: receive the presence events of exactly ``names`` (the Fleet page's rows in view)
        besides the things :meth:`watch` pins, :data:`FOLLOW_MAX` at most (the rest keep the index's
        connectivity), dropping the filters of the others. Unscoped the fleet-wide filter already
        has them: nothing changes.

        Returns:
            The names now followed.
        """
        if not self.scoped:
            return []
        self._page = list(dict.fromkeys(names))
        return await self._sync()

    async def watch(self, thing: str) -> Callable[[], Any]:
        """Scoped: follow ``thing``'s presence while it is shown (the Device page), whatever the
        Fleet page follows. Returns an async function that stops (pins are counted)."""
        self._pins[thing] = self._pins.get(thing, 0) + 1
        await self._sync()

        async def stop() -> None:
            left = self._pins.get(thing, 0) - 1
            if left > 0:
                self._pins[thing] = left
            else:
                self._pins.pop(thing, None)
            await self._sync()
        return stop

    async def _sync(self) -> list[str]:
        if not self.scoped:
            return []
        async with self._follow_lock:
            want = list(dict.fromkeys([*self._pins, *self._page]))[:FOLLOW_MAX]
            for name in [n for n in self._followed if n not in want]:
                await self._followed.pop(name)()
            for name in want:
                if name not in self._followed:
                    self._followed[name] = await self.conn.subscribe(presence_filter(name), self._on_event, qos=1)
        return self.followed

    async def stop(self) -> None:
        if self._remove is not None:
            await self._remove()
            self._remove = None
        self._page, self._pins = [], {}
        async with self._follow_lock:
            while self._followed:
                await self._followed.popitem()[1]()

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
