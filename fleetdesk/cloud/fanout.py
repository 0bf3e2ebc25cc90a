"""One event source handed to many consumers: callbacks and async iterators, on the loop.

The connection's state events, the shadow events, the stored telemetry batches and the device
log records all reach the app the same two ways: ``add_listener(fn)`` (called for every event,
returns a remover) and an async iterator (one queue per consumer, removed when the consumer
stops iterating). A listener that raises is logged and the others still run; a bounded stream
that is full loses its oldest event (``on_drop`` is told), so a slow consumer never stalls the
producer.

Example::

    states: Fanout[StateEvent] = Fanout("state")
    remove = states.add_listener(print)
    async for ev in states.stream(first=current): ...
    states.emit(ev)
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, AsyncIterator, Callable, Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class Fanout(Generic[T]):
    """Delivers each emitted event to every listener and every open stream.

    Args:
        what: names the events in the log line of a failing listener ("state", "shadow", ...).
        on_drop: called each time a full bounded stream loses its oldest event.
    """

    def __init__(self, what: str, on_drop: Callable[[], Any] | None = None) -> None:
        self.what = what
        self.on_drop = on_drop
        self._listeners: list[Callable[[T], Any]] = []
        self._streams: list[tuple[asyncio.Queue[T], Callable[[T], bool] | None]] = []

    def add_listener(self, fn: Callable[[T], Any]) -> Callable[[], None]:
        """Call ``fn(event)`` for every event; returns a remover (harmless to call twice)."""
        self._listeners.append(fn)
        return lambda: self._listeners.remove(fn) if fn in self._listeners else None

    async def stream(self, *, first: T | None = None, accept: Callable[[T], bool] | None = None,
                     maxsize: int = 0) -> AsyncIterator[T]:
        """The events from now on (``first`` before them), those ``accept`` takes if given.

        ``maxsize`` > 0 bounds the queue: when full, the oldest event is dropped for the new one.
        """
        q: asyncio.Queue[T] = asyncio.Queue(maxsize)
        if first is not None:
            q.put_nowait(first)
        entry = (q, accept)
        self._streams.append(entry)
        try:
            while True:
                yield await q.get()
        finally:
            self._streams.remove(entry)

    def emit(self, event: T) -> None:
        """Hand ``event`` to every listener, then queue it for every stream that accepts it."""
        for fn in list(self._listeners):
            try:
                fn(event)
            except Exception:  # a listener must not break the stream
                log.exception("%s listener failed", self.what)
        for q, accept in list(self._streams):
            if accept is not None and not accept(event):
                continue
            if q.full():
                q.get_nowait()
                if self.on_drop is not None:
                    self.on_drop()
            q.put_nowait(event)
