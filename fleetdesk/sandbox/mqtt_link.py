"""The services' privileged MQTT link to the broker: a small asyncio MQTT 3.1.1 client.

One :class:`MqttLink` per service, on the internal plain listener (127.0.0.1, password).
It is an ``asyncio.Protocol``: each PUBLISH is handed to the service's handler straight
from ``data_received`` (no queue, no task per message) and replies go out with plain
``transport.write`` calls (TCP_NODELAY; :meth:`MqttLink.cork` batches them into one).
Measured here, an echo through aiomqtt/paho cost ~1 ms more per hop, and paho's Nagle
delay alone ~40 ms. Requests are subscribed at QoS 0: a QoS 1 link that lags lets
mosquitto drop messages past ``max_queued_messages``. Remember ``#`` never matches
``$aws/...``: every ``$aws`` filter is spelled out. The link reconnects (and
resubscribes) if the broker restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import struct
import uuid
from typing import Any, Awaitable, Callable

from fleetdesk.sandbox.mqtt_wire import decode_varint, mqtt_string, packet

log = logging.getLogger(__name__)

Handler = Callable[[str, bytes], Awaitable[None] | None]
KEEPALIVE_S = 30


class _Protocol(asyncio.Protocol):
    def __init__(self, link: "MqttLink") -> None:
        self.link = link
        self.transport: asyncio.Transport  # set by connection_made, before any data or write
        self.buf = bytearray()
        self.connack: asyncio.Future = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future = asyncio.get_running_loop().create_future()
        self.acks: dict[int, asyncio.Future] = {}

    def connection_made(self, transport) -> None:  # type: ignore[override]
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass

    def connection_lost(self, exc) -> None:
        if not self.closed.done():
            self.closed.set_result(exc)
        if not self.connack.done():
            self.connack.set_exception(ConnectionError("connection closed before CONNACK"))
        for fut in self.acks.values():
            if not fut.done():
                fut.set_exception(ConnectionError("connection closed"))

    def data_received(self, data: bytes) -> None:
        try:
            self._parse(data)
        finally:
            self.link._read_done()

    def _parse(self, data: bytes) -> None:
        self.buf += data
        buf = self.buf
        while len(buf) >= 2:
            rl = decode_varint(buf, 1)
            if rl is None:
                return
            length, i = rl
            end = i + length
            if len(buf) < end:
                return
            kind, body = buf[0], bytes(buf[i:end])
            del buf[:end]
            self._packet(kind, body)

    def _packet(self, kind: int, body: bytes) -> None:
        ptype = kind >> 4
        if ptype == 3:  # PUBLISH
            qos = (kind >> 1) & 3
            tlen = struct.unpack_from(">H", body, 0)[0]
            topic = body[2:2 + tlen].decode("utf-8", "replace")
            pos = 2 + tlen
            if qos:
                pid = body[pos:pos + 2]
                pos += 2
                self.transport.write(b"\x40\x02" + pid)  # PUBACK
            if kind & 0x01 and topic.startswith("$"):
                # A retained message replayed on subscribe: AWS keeps none on reserved topics,
                # so a stored request is never re-run; clear it (empty retained publish).
                log.warning("cleared a retained message on reserved topic %s", topic)
                self.transport.write(packet(0x31, mqtt_string(topic)))
                return
            self.link._dispatch(topic, body[pos:])
        elif ptype == 2:  # CONNACK
            if not self.connack.done():
                if body[1] == 0:
                    self.connack.set_result(True)
                else:
                    self.connack.set_exception(ConnectionRefusedError(f"CONNACK return code {body[1]}"))
        elif ptype == 9:  # SUBACK
            pid = struct.unpack_from(">H", body, 0)[0]
            fut = self.acks.pop(pid, None)
            if fut and not fut.done():
                fut.set_result(list(body[2:]))
        # PUBACK (4) and PINGRESP (13) need nothing


class MqttLink:
    """A privileged internal client.

    Args:
        internal: ``ctx.internal_mqtt`` (host, port, username, password).
        name: short service name (used in the client id).
        filters: topic filters to subscribe to (at QoS 0: a local link needs no broker-side queue).
        handler: ``handler(topic, payload)``; sync handlers run inline, in arrival order;
            async ones are started as tasks in arrival order. Exceptions are logged.
        on_read_done: called after the messages of one socket read were handed over (a
            service that queues them can process the batch at once, no extra loop turn).
    """

    def __init__(self, internal: Any, name: str, filters: list[str], handler: Handler,
                 on_read_done: Callable[[], None] | None = None) -> None:
        self.internal = internal
        self.name = name
        self.filters = filters
        self.handler = handler
        self.on_read_done = on_read_done
        self._proto: _Protocol | None = None
        self._task: asyncio.Task | None = None
        self._ready = asyncio.Event()
        self._stopping = False
        self._pid = 0
        self._corked: list[bytes] | None = None

    def _next_pid(self) -> int:
        self._pid = self._pid % 65535 + 1
        return self._pid

    async def start(self, timeout: float = 15.0) -> "MqttLink":
        """Connect and subscribe; returns once the subscriptions are in place."""
        self._task = asyncio.create_task(self._run(), name=f"mqtt-link-{self.name}")
        ready = asyncio.create_task(self._ready.wait())
        done, _ = await asyncio.wait({ready, self._task}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if ready not in done:
            ready.cancel()
            if self._task in done:
                self._task.result()
            from fleetdesk.errors import SandboxError

            raise SandboxError(f"sandbox {self.name} service could not log in to the broker's internal listener "
                               f"{self.internal.host}:{self.internal.port} within {timeout:.0f} s",
                               "check the sandbox log; a stale broker or a changed internal password breaks it")
        return self

    async def _session(self) -> None:
        loop = asyncio.get_running_loop()
        im = self.internal
        _, proto = await loop.create_connection(lambda: _Protocol(self), im.host, im.port)
        try:
            flags = 0x02 | 0x80 | 0x40  # clean session, username, password
            body = (mqtt_string("MQTT") + bytes([4, flags]) + struct.pack(">H", KEEPALIVE_S)
                    + mqtt_string(f"fd-svc-{self.name}-{uuid.uuid4().hex[:8]}")
                    + mqtt_string(im.username) + mqtt_string(im.password))
            proto.transport.write(packet(0x10, body))
            await asyncio.wait_for(proto.connack, 10)
            if self.filters:
                pid = self._next_pid()
                fut = loop.create_future()
                proto.acks[pid] = fut
                # QoS 0: the broker hands requests over without an inflight window or a queue cap
                # (with QoS 1 a lagging link makes mosquitto drop past max_queued_messages)
                subs = b"".join(mqtt_string(f) + b"\x00" for f in self.filters)
                proto.transport.write(packet(0x82, struct.pack(">H", pid) + subs))
                codes = await asyncio.wait_for(fut, 10)
                if any(c >= 0x80 for c in codes):
                    raise PermissionError(f"{self.name}: broker refused a subscription ({codes})")
            self._proto = proto
            self._ready.set()
            while not proto.closed.done():
                try:
                    await asyncio.wait_for(asyncio.shield(proto.closed), KEEPALIVE_S / 2)
                except asyncio.TimeoutError:
                    proto.transport.write(b"\xc0\x00")  # PINGREQ
        finally:
            self._proto = None
            if proto.transport is not None:
                proto.transport.close()

    async def _run(self) -> None:
        delay = 0.2
        while not self._stopping:
            try:
                await self._session()
                delay = 0.2
            except asyncio.CancelledError:
                raise
            except PermissionError:
                raise
            except (OSError, asyncio.TimeoutError, ConnectionError) as exc:
                log.debug("%s: broker link: %r", self.name, exc)
            if self._stopping:
                return
            log.warning("%s: broker link lost; reconnecting", self.name)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    def _dispatch(self, topic: str, payload: bytes) -> None:
        try:
            result = self.handler(topic, payload)
            if asyncio.iscoroutine(result):
                task = asyncio.get_running_loop().create_task(result)
                task.add_done_callback(self._task_done)
        except Exception:  # a bad message must never stop the service
            log.exception("%s: handler failed on %s", self.name, topic)

    def _read_done(self) -> None:
        if self.on_read_done is not None:
            try:
                self.on_read_done()
            except Exception:
                log.exception("%s: read-done hook failed", self.name)

    def _task_done(self, task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("%s: handler failed", self.name, exc_info=task.exception())

    def publish(self, topic: str, payload: dict | bytes | str, qos: int = 1, retain: bool = False) -> None:
        """Send a PUBLISH now (QoS 0/1; acks are not awaited). Dropped if the link is down."""
        if isinstance(payload, dict):
            payload = json.dumps(payload, separators=(",", ":")).encode()
        elif isinstance(payload, str):
            payload = payload.encode()
        proto = self._proto
        if proto is None or proto.transport is None or proto.transport.is_closing():
            log.warning("%s: not connected; dropped publish to %s", self.name, topic)
            return
        head = mqtt_string(topic)
        flags = 0x01 if retain else 0
        if qos:
            data = packet(0x32 | flags, head + struct.pack(">H", self._next_pid()) + bytes(payload))
        else:
            data = packet(0x30 | flags, head + bytes(payload))
        if self._corked is not None:
            self._corked.append(data)
        else:
            proto.transport.write(data)

    @contextlib.contextmanager
    def cork(self):
        """Collect the publishes made inside the block and send them in one write."""
        if self._corked is not None:  # nested: the outer block flushes
            yield
            return
        self._corked = []
        try:
            yield
        finally:
            data, self._corked = b"".join(self._corked), None
            proto = self._proto
            if data and proto is not None and proto.transport is not None and not proto.transport.is_closing():
                proto.transport.write(data)

    async def stop(self) -> None:
        """Disconnect and end the link task."""
        self._stopping = True
        proto = self._proto
        if proto is not None and proto.transport is not None and not proto.transport.is_closing():
            proto.transport.write(b"\xe0\x00")  # DISCONNECT
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
        self._proto = None


async def follow_while(owner: Any, want: bool, make: Callable[[], MqttLink]) -> None:
    """Keep ``owner.link`` running exactly while ``want``: start one from ``make()`` when none runs,
    stop it when it is no longer wanted (for services that cost nothing while they are off)."""
    if want and owner.link is None:
        link = make()
        await link.start()
        owner.link = link
    elif not want and owner.link is not None:
        link, owner.link = owner.link, None
        await link.stop()
