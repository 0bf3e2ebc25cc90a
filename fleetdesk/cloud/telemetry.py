"""Telemetry ingest: ``dt/+/env`` → parse → store (one transaction per batch) → ack → fleet/UI.

Messages are subscribed at QoS1 with manual acknowledgement and a persistent session, so a
message is acknowledged to the broker only after its batch is committed to SQLite: if the
app or the broker dies in between, the broker redelivers it (duplicates are ignored by the
store). Batching is group commit: while one batch is being written (in a single worker
thread), the next one accumulates; at most ``max_batch`` messages per transaction.

The UI gets batches, not messages: register ``on_batch(samples)`` or iterate
:meth:`Telemetry.batches`.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
from typing import Any, AsyncIterator, Callable

from fleetdesk.cloud.connection import Connection, Message
from fleetdesk.cloud.fanout import Fanout
from fleetdesk.cloud.subscription import Subscription
from fleetdesk.cloud.topics import TELEMETRY_FILTER, thing_from_telemetry_topic
from fleetdesk.cloud.fleet_state import FleetState
from fleetdesk.store.telemetry import Sample, TelemetryError, TelemetryStore, parse_sample

log = logging.getLogger(__name__)


class Telemetry:
    """Stores and distributes device telemetry.

    Args:
        conn: a started (or about to start) :class:`Connection` with privileged credentials.
        store: where samples go before they are acknowledged; None = no history (acked at once).
        fleet: fleet model updated after each batch (on the loop), optional.
        max_batch: largest transaction.
        topic_filter: the telemetry filter (default ``dt/+/env``).
    """

    def __init__(self, conn: Connection, store: TelemetryStore | None = None, fleet: FleetState | None = None,
                 *, max_batch: int = 5000, topic_filter: str = TELEMETRY_FILTER) -> None:
        self.conn = conn
        self.store = store
        self.fleet = fleet
        self.max_batch = max_batch
        self.topic_filter = topic_filter
        self.stats: collections.Counter = collections.Counter()
        self._pending: list[tuple[Sample, Message]] = []
        self._flushing = False
        self._batches: Fanout[list[Sample]] = Fanout("telemetry", on_drop=self._dropped)
        self._writer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="telemetry-store")
        self._all = Subscription(conn, topic_filter, self._on_message, qos=1, manual_ack=store is not None)
        self._idle = asyncio.Event()
        self._idle.set()

    async def start(self) -> None:
        """Subscribe (QoS1; manual ack when storing)."""
        await self._all.start()

    async def stop(self, *, unsubscribe: bool = True) -> None:
        """Write what is pending, stop the writer thread.

        Args:
            unsubscribe: also drop the MQTT subscription. The session keeps it (``False``) so a
                persistent session goes on queueing telemetry while the app is closed.
        """
        await self._all.stop(unsubscribe=unsubscribe)
        await self.flushed()
        self._writer.shutdown(wait=True)

    async def flushed(self, timeout: float = 30.0) -> None:
        """Wait until every received message is stored and acknowledged."""
        if self._pending and not self._flushing:
            self._schedule_flush()
        await asyncio.wait_for(self._idle.wait(), timeout)

    # ---------------------------------------------------------------- listeners
    def add_listener(self, fn: Callable[[list[Sample]], Any]) -> Callable[[], None]:
        """Call ``fn(samples)`` on the loop after each stored batch. Returns a remover."""
        return self._batches.add_listener(fn)

    async def batches(self, maxsize: int = 100) -> AsyncIterator[list[Sample]]:
        """Async iterator of stored batches. A slow consumer loses the oldest batches
        (counted in ``stats["ui_batches_dropped"]``), never stalls ingest."""
        async for batch in self._batches.stream(maxsize=maxsize):
            yield batch

    def _dropped(self) -> None:
        self.stats["ui_batches_dropped"] += 1

    # ---------------------------------------------------------------- ingest
    def _on_message(self, msg: Message) -> None:
        self.stats["received"] += 1
        thing = thing_from_telemetry_topic(msg.topic)
        try:
            if thing is None:
                raise TelemetryError(f"unexpected telemetry topic {msg.topic!r}")
            sample = parse_sample(thing, msg.payload, msg.received)
        except TelemetryError as exc:
            self.stats["malformed"] += 1
            if self.fleet is not None:
                self.fleet._problem("malformed_telemetry", thing, exc, msg.payload)
            msg.ack()  # nothing to keep: do not let the broker redeliver it forever
            return
        self._pending.append((sample, msg))
        if not self._flushing:
            self._schedule_flush()

    def _schedule_flush(self) -> None:
        self._flushing = True
        self._idle.clear()
        # Run after the current drain of the connection inbox so a burst forms one batch.
        asyncio.get_running_loop().call_soon(lambda: asyncio.ensure_future(self._flush_loop()))

    async def _flush_loop(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                batch = self._pending[: self.max_batch]
                del self._pending[: self.max_batch]
                samples = [s for s, _ in batch]
                if self.store is not None:
                    try:
                        added = await loop.run_in_executor(self._writer, self.store.insert_many, samples)
                    except Exception as exc:  # noqa: BLE001 - kept unacked and retried (below)
                        # Not stored: keep it (unacked) and retry; nothing is lost.
                        self.stats["store_errors"] += 1
                        log.error("telemetry batch of %d not stored, retrying: %s", len(samples), exc)
                        self._pending[:0] = batch
                        await asyncio.sleep(0.5)
                        continue
                    self.stats["stored"] += added
                    self.stats["duplicates"] += len(samples) - added
                for _, msg in batch:
                    msg.ack()
                self.stats["batches"] += 1
                self._deliver(samples)
        finally:
            self._flushing = False
            if self._pending:
                self._schedule_flush()
            else:
                self._idle.set()

    def _deliver(self, samples: list[Sample]) -> None:
        if self.fleet is not None:
            self.fleet.apply_samples(samples)
        self._batches.emit(samples)
