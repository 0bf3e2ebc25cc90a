# A small asyncio MQTT 3.1.1 client for MicroPython and CPython.
#
# QoS 0 and 1 (publish and subscribe), keep-alive pings, clean-session option, one reader
# task that dispatches incoming PUBLISH to a callback. MicroPython has no built-in MQTT client
# and umqtt blocks, so the firmware carries this one.
#
# Memory (a 112 KB GC heap on a stock ESP32): a packet body is read once and the payload
# handed on as a memoryview into it (no copy); a packet larger than MAX_PACKET is never
# buffered: its first HEAD bytes go to on_oversize(topic, head, size) and the rest is read
# and dropped in small chunks. So is one whose buffer cannot be allocated (MemoryError): the
# message is lost, not the connection - unless skim(topic) says its JSON may lose its long
# strings: then it is read in DRAIN chunks through fd.jsonskim (strings over 2 KB become
# placeholders), so an 8 KB shadow delta needs no free 8 KB block.
import struct

from fd import compat
from fd.compat import asyncio

CONNECT = 0x10
CONNACK = 0x20
PUBLISH = 0x30
PUBACK = 0x40
SUBSCRIBE = 0x82
SUBACK = 0x90
UNSUBSCRIBE = 0xA2
UNSUBACK = 0xB0
PINGREQ = 0xC0
PINGRESP = 0xD0
DISCONNECT = 0xE0

CONNACK_REASONS = {
    1: "unacceptable protocol version",
    2: "client identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorized",
}


MAX_PACKET = 16 * 1024  # an AWS shadow/get document with metadata fits; a 32 KB job document does not
HEAD = 512
DRAIN = 1024


class MQTTError(OSError):
    pass


async def open_tls(host, port, ctx, timeout_ms=15000):
    """Open a TLS stream (ctx from fd.tls.tls_context); returns (reader, writer)."""
    compat.collect()  # the handshake's buffers want large blocks
    coro = asyncio.open_connection(host, port, ssl=ctx, server_hostname=host)
    return await asyncio.wait_for(coro, timeout_ms / 1000)


def _str(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("!H", len(b)) + b


def _varlen(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def packet(first, body):
    return bytes([first]) + _varlen(len(body)) + body


def connect_packet(client_id, keepalive, clean, user=None, password=None, will=None):
    flags = 0x02 if clean else 0
    payload = _str(client_id)
    if will:
        topic, msg, qos, retain = will
        flags |= 0x04 | (qos << 3) | (0x20 if retain else 0)
        payload += _str(topic) + _str(msg)
    if user is not None:
        flags |= 0x80
        payload += _str(user)
    if password is not None:
        flags |= 0x40
        payload += _str(password)
    body = _str("MQTT") + bytes([4, flags]) + struct.pack("!H", keepalive) + payload
    return packet(CONNECT, body)


def publish_packet(topic, payload, qos=0, retain=False, pid=0, dup=False):
    if isinstance(payload, str):
        payload = payload.encode()
    first = PUBLISH | (qos << 1) | (1 if retain else 0) | (0x08 if dup else 0)
    body = _str(topic) + (struct.pack("!H", pid) if qos else b"") + payload
    return packet(first, body)


class MQTTClient:
    """One MQTT connection.

    Args:
        client_id: MQTT client id (the thing name on AWS IoT).
        host, port: broker address.
        ssl: a TLS context from fd.tls.tls_context, or None for plain TCP.
        keepalive: seconds; a PINGREQ goes out when the link was idle half of that.
        clean: clean session flag (False keeps QoS 1 subscriptions across reconnects).
        on_message: callback(topic: str, payload: bytes), called from the reader task.
        skim: callback(topic) -> bool: a PUBLISH on that topic whose buffer cannot be
            allocated is read through fd.jsonskim instead of being dropped.
    """

    def __init__(self, client_id, host, port, ssl=None, keepalive=60, clean=True,
                 on_message=None, user=None, password=None, on_oversize=None, max_packet=MAX_PACKET,
                 skim=None):
        self.client_id = client_id
        self.host = host
        self.port = port
        self.ssl = ssl
        self.keepalive = keepalive
        self.clean = clean
        self.on_message = on_message
        self.on_oversize = on_oversize
        self.max_packet = max_packet
        self.skim = skim
        self.skimmed = 0
        self.dropped = 0
        self.user = user
        self.password = password
        self.connected = False
        self.closed = asyncio.Event()
        self.error = None
        self._reader = None
        self._writer = None
        self._pid = 0
        self._waiters = {}
        self._tasks = []
        self._wlock = asyncio.Lock()
        self._last_tx = 0
        self._last_rx = 0

    def _next_pid(self):
        self._pid = self._pid % 65535 + 1
        return self._pid

    async def connect(self, timeout_ms=15000):
        """Open the link and send CONNECT. Returns session_present. Raises OSError/MQTTError."""
        if self.ssl is not None:
            r, w = await open_tls(self.host, self.port, self.ssl, timeout_ms)
        else:
            r, w = await asyncio.wait_for(asyncio.open_connection(self.host, self.port), timeout_ms / 1000)
        self._reader, self._writer = r, w
        self.closed = asyncio.Event()
        self.error = None
        try:
            await self._send(connect_packet(self.client_id, self.keepalive, self.clean,
                                            self.user, self.password))
            first, body = await asyncio.wait_for(self._read_packet(), timeout_ms / 1000)
        except BaseException:
            self._close_streams()
            raise
        if first != CONNACK or len(body) < 2:  # pyright: ignore[reportArgumentType] - a CONNACK body is never oversize
            self._close_streams()
            raise MQTTError("broker answered CONNECT with packet 0x%02x" % first)
        if body[1] != 0:
            self._close_streams()
            raise MQTTError("connection refused: " + CONNACK_REASONS.get(body[1], str(body[1])))
        self.connected = True
        self._last_rx = self._last_tx = compat.ticks_ms()
        self._tasks = [asyncio.create_task(self._read_loop()), asyncio.create_task(self._ping_loop())]
        return bool(body[0] & 1)

    async def _send(self, data, on_written=None):
        async with self._wlock:
            self._writer.write(data)
            if on_written is not None:
                on_written()  # the packet is in the transport: it goes out unless the link dies
            await self._writer.drain()
        self._last_tx = compat.ticks_ms()

    async def _read_packet(self):
        r = self._reader
        hdr = await r.readexactly(1)
        n = 0
        shift = 0
        while True:
            b = (await r.readexactly(1))[0]
            n |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        buf = None
        if HEAD < n <= self.max_packet and hasattr(r, "readinto"):
            try:
                buf = bytearray(n)
            except MemoryError:  # no free block that large now: dropped like an oversize one, the link stays
                compat.collect()
        if n > self.max_packet or (n > HEAD and buf is None and hasattr(r, "readinto")):
            head = await r.readexactly(HEAD)
            left = n - HEAD
            if n <= self.max_packet and hdr[0] & 0xF0 == PUBLISH and self.skim is not None:
                body = await self._skimmed(hdr[0], head, left)
                self._last_rx = compat.ticks_ms()
                if body is not None:
                    return hdr[0], body
                return hdr[0], _Oversize(head, n)
            while left:
                left -= len(await r.readexactly(DRAIN if left > DRAIN else left))
            self._last_rx = compat.ticks_ms()
            return hdr[0], _Oversize(head, n)
        if buf is not None:
            body = await _read_into(r, buf)
        else:
            body = await r.readexactly(n) if n else b""
        self._last_rx = compat.ticks_ms()
        return hdr[0], body

    async def _skimmed(self, first, head, left):
        """Read the `left` bytes after `head` in DRAIN chunks; the packet's body with its long
        strings elided (fd.jsonskim) when skim() takes its topic, else None (read and dropped)."""
        tlen = struct.unpack("!H", head[:2])[0]
        pos = 2 + tlen + (2 if (first >> 1) & 3 else 0)
        size = left
        sk = None
        skim = self.skim
        if skim is not None and pos <= len(head):
            try:
                if skim(bytes(head[2:2 + tlen]).decode()):
                    from fd import jsonskim

                    sk = jsonskim.Skim()
                    sk.out.append(bytes(head[:pos]))  # topic + packet id: kept as they are
                    sk.feed(memoryview(head)[pos:])
            except (MemoryError, UnicodeError):
                sk = None
        chunk = bytearray(DRAIN)
        mv = memoryview(chunk)
        r = self._reader
        while left:
            k = DRAIN if left > DRAIN else left
            got = 0
            while got < k:
                m = await r.readinto(mv[got:k])
                if not m:
                    raise EOFError("link closed inside a packet")
                got += m
            left -= k
            if sk is not None:
                try:
                    sk.feed(mv[:k])
                except MemoryError:
                    sk = None
        del chunk, mv
        if sk is None:
            return None
        try:
            # the topic/pid piece was coalesced in front: the result is header + document
            body = sk.result()
        except (MemoryError, ValueError):
            return None
        self.skimmed += 1
        print("mqtt: no free block for a %d-byte message: read it in chunks, %d long string(s) elided, "
              "%d bytes kept" % (HEAD + size, sk.elided, len(body)))
        return body

    async def _read_loop(self):
        try:
            while True:
                first, body = await self._read_packet()
                kind = first & 0xF0
                if isinstance(body, _Oversize):
                    await self._on_oversize(first, body)
                    continue
                if kind == PUBLISH:
                    await self._on_publish(first, body)
                elif kind in (PUBACK, SUBACK, UNSUBACK):
                    pid = struct.unpack("!H", body[:2])[0]
                    w = self._waiters.pop(pid, None)
                    if w is not None:
                        w[1] = body[2:] if kind == SUBACK else True
                        w[0].set()
                elif kind == PINGRESP:
                    pass
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # EOF, reset, TLS error: the link is gone
            self._lost(exc)

    async def _on_oversize(self, first, big):
        self.dropped += 1
        if first & 0xF0 != PUBLISH:
            return
        head = big.head
        tlen = struct.unpack("!H", head[:2])[0]
        pos = 2 + tlen + (2 if (first >> 1) & 3 else 0)
        topic = bytes(head[2:2 + tlen]).decode() if pos <= len(head) else "?"
        print("mqtt: dropped a %d-byte message on %s (cap %d bytes, or no free block that large)"
              % (big.size, topic, self.max_packet))
        if self.on_oversize is not None and pos <= len(head):
            try:
                self.on_oversize(topic, memoryview(head)[pos:], big.size)
            except Exception as exc:
                print("mqtt: oversize handler failed:", repr(exc))
        if (first >> 1) & 3:  # still acknowledged: the broker must not send it again
            await self._send(packet(PUBACK, head[2 + tlen:4 + tlen]))

    async def _on_publish(self, first, body):
        qos = (first >> 1) & 3
        tlen = struct.unpack("!H", body[:2])[0]
        topic = bytes(body[2:2 + tlen]).decode()
        pos = 2 + tlen
        pid = 0
        if qos:
            pid = struct.unpack("!H", body[pos:pos + 2])[0]
            pos += 2
        payload = memoryview(body)[pos:]  # a view, not a copy of a possibly 16 KB body
        if self.on_message is not None:
            try:
                self.on_message(topic, payload)
            except Exception as exc:
                print("mqtt: message handler failed:", repr(exc))
        if qos:
            await self._send(packet(PUBACK, struct.pack("!H", pid)))

    async def _ping_loop(self):
        half = self.keepalive * 500
        try:
            while self.connected:
                await compat.sleep_ms(min(half, 5000))
                now = compat.ticks_ms()
                if compat.ticks_diff(now, self._last_rx) > self.keepalive * 1500:
                    self._lost(MQTTError("keep-alive timeout"))
                    return
                if compat.ticks_diff(now, self._last_tx) >= half:
                    await self._send(bytes([PINGREQ, 0]))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._lost(exc)

    def _lost(self, exc):
        if not self.connected and self.closed.is_set():
            return
        self.connected = False
        self.error = exc
        for w in self._waiters.values():
            w[0].set()
        self._waiters = {}
        self._close_streams()
        self.closed.set()
        me = None
        try:
            me = asyncio.current_task()
        except Exception:
            pass
        for t in self._tasks:
            if t is not me:
                t.cancel()

    def _close_streams(self):
        w = self._writer
        self._writer = None
        if w is not None:
            try:
                w.close()
            except Exception:
                pass

    def _expect(self, pid):
        w = [asyncio.Event(), None]
        self._waiters[pid] = w
        return w

    async def _wait_ack(self, pid, w, timeout_ms):
        try:
            await asyncio.wait_for(w[0].wait(), timeout_ms / 1000)
        except asyncio.TimeoutError:
            self._waiters.pop(pid, None)
            raise MQTTError("no acknowledgement within %d ms" % timeout_ms)
        if w[1] is None:
            raise MQTTError("connection lost before acknowledgement")
        return w[1]

    def _check(self):
        if not self.connected:
            raise MQTTError("not connected")

    async def publish(self, topic, payload, qos=0, retain=False, timeout_ms=10000, on_written=None):
        """Publish; with qos=1 waits for PUBACK (raises MQTTError on timeout/loss).

        on_written (QoS 0): called as soon as the packet was handed to the transport.
        """
        self._check()
        if qos == 0:
            await self._send(publish_packet(topic, payload, 0, retain), on_written)
            return
        pid = self._next_pid()
        w = self._expect(pid)
        await self._send(publish_packet(topic, payload, 1, retain, pid))
        await self._wait_ack(pid, w, timeout_ms)

    async def subscribe(self, topics, qos=1, timeout_ms=10000):
        """Subscribe to one topic or a list; returns the granted QoS list (0x80 = refused)."""
        return list(await self._topics_request(SUBSCRIBE, topics, bytes([qos]), timeout_ms))

    async def unsubscribe(self, topics, timeout_ms=10000):
        """Unsubscribe from one topic or a list (waits for UNSUBACK)."""
        await self._topics_request(UNSUBSCRIBE, topics, b"", timeout_ms)

    async def _topics_request(self, kind, topics, per_topic, timeout_ms):
        """A SUBSCRIBE or UNSUBSCRIBE: one packet id, each topic followed by per_topic; the ack's payload."""
        self._check()
        if isinstance(topics, str):
            topics = [topics]
        pid = self._next_pid()
        body = struct.pack("!H", pid)
        for t in topics:
            body += _str(t) + per_topic
        w = self._expect(pid)
        await self._send(packet(kind, body))
        return await self._wait_ack(pid, w, timeout_ms)

    async def disconnect(self):
        if self.connected:
            try:
                await self._send(bytes([DISCONNECT, 0]))
            except Exception:
                pass
        self.connected = False
        for t in self._tasks:
            t.cancel()
        self._tasks = []
        self._close_streams()
        self.closed.set()


async def _read_into(r, buf):
    """Fill `buf` from the stream: MicroPython's readexactly() concatenates chunk by chunk (a
    16 KB message would take several 16 KB copies of the heap on the way)."""
    n = len(buf)
    mv = memoryview(buf)
    pos = 0
    while pos < n:
        k = await r.readinto(mv[pos:])
        if not k:
            raise EOFError("link closed inside a packet")
        pos += k
    return buf


class _Oversize:
    """A packet too large to buffer: its first bytes and its size."""

    def __init__(self, head, size):
        self.head = head
        self.size = size
