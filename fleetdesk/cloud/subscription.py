"""A topic filter a service listens on while it is started (device logs, RPC replies, telemetry).

``start`` subscribes once, ``stop`` unsubscribes once; both may be called again harmlessly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from fleetdesk.cloud.connection import Connection, Handler


@dataclass
class Subscription:
    """``conn.subscribe(topic_filter, handler, qos=..., manual_ack=...)`` held between start and stop."""

    conn: Connection
    topic_filter: str
    handler: Handler
    qos: int
    manual_ack: bool = False
    _remove: Callable[[], Any] | None = field(default=None, init=False, repr=False)

    @property
    def active(self) -> bool:
        return self._remove is not None

    async def start(self) -> None:
        if self._remove is None:
            self._remove = await self.conn.subscribe(self.topic_filter, self.handler, qos=self.qos,
                                                     manual_ack=self.manual_ack)

    async def stop(self, *, unsubscribe: bool = True) -> None:
        """Stop holding the subscription; ``unsubscribe=False`` leaves it on the broker (a persistent
        session goes on queueing for it)."""
        remove, self._remove = self._remove, None
        if remove is not None and unsubscribe:
            await remove()
