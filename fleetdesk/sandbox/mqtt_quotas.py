"""IoT Core's per-connection MQTT quotas, applied by the mTLS front to the bytes it bridges.

Hand-written because it is the emulator side: mosquitto has no per-connection publish rate,
subscription count or per-SUBSCRIBE filter limit, and negotiates keep-alive and session expiry
its own way. :class:`ConnectionQuotas` sits between the device and the broker and does what
IoT Core's message broker does (values from :data:`fleetdesk.sandbox.quotas.MQTT_DEFAULTS`,
overridable with ``FLEETDESK_SANDBOX_QUOTAS``; sources in README, "Sandbox quotas"):

* **Publishes per second, in and out** (100 each, token bucket with one second of burst): a
  publish over the rate is discarded. Inbound: it does not reach the broker and gets no PUBACK
  (a QoS 1 publisher sees a timeout, as on AWS). Outbound: the device does not get it; a QoS 1
  one is acknowledged to the broker by the front so the broker's in-flight window does not fill.
* **Topic filters per SUBSCRIBE** (8) and **subscriptions per connection** (50): a SUBSCRIBE
  over either is not forwarded; its SUBACK refuses every filter (MQTT 3.1.1 0x80, MQTT5 0x97
  "Quota exceeded").
* **Subscription identifiers** are not supported by IoT Core: the MQTT5 CONNACK says so
  (Subscription Identifier Available 0) and a SUBSCRIBE carrying one gets SUBACK 0xA1.
* **Stored messages of a resumed persistent session** (10 per second): after a CONNACK with
  Session Present, QoS 1 publishes from the broker are held and delivered at that rate (within
  the outbound rate too) until the backlog has drained, as IoT Core delivers "stored messages
  ... at a maximum rate of 10 messages per second, along with any current message traffic"
  (developer guide, "MQTT persistent sessions"): nothing is dropped, it takes a while. The
  held ones are not acknowledged to the broker, so its in-flight window paces the rest.
* **Keep-alive** below 30 s is raised to 30, above 1200 s (or 0) lowered to 1200; **session
  expiry** above 1 hour is lowered to it. The broker sees the adjusted CONNECT; an MQTT5
  client is told in the CONNACK (Server Keep Alive, Session Expiry Interval).
* **Payload** over 128 KB: the connection is closed (MQTT5: DISCONNECT 0x95 "Packet too large").

Every refusal is counted per client id (:meth:`fleetdesk.sandbox.quotas.Quotas.count_mqtt`).
"""

from __future__ import annotations

import collections
import struct
import time
from typing import Callable

from fleetdesk.sandbox.mqtt_wire import MqttProtocolError, decode_varint, encode_varint, packet

PUBLISH, PUBACK, SUBSCRIBE, SUBACK, UNSUBSCRIBE, CONNACK = 3, 4, 8, 9, 10, 2

# MQTT5 property id -> value kind ("b" byte, "h" two bytes, "i" four bytes, "v" varint,
# "s" string/binary, "p" string pair)
_PROPS = {0x01: "b", 0x02: "i", 0x03: "s", 0x08: "s", 0x09: "s", 0x0B: "v", 0x11: "i", 0x12: "s",
          0x13: "h", 0x15: "s", 0x16: "s", 0x17: "b", 0x18: "i", 0x19: "b", 0x1A: "s", 0x1C: "s",
          0x1F: "s", 0x21: "h", 0x22: "h", 0x23: "h", 0x24: "b", 0x25: "b", 0x26: "p", 0x27: "i",
          0x28: "b", 0x29: "b", 0x2A: "b"}


def properties(data: bytes, pos: int) -> tuple[list[tuple[int, int, int]], int]:
    """The MQTT5 property list at ``data[pos:]``: ([(id, value start, value end)], end).

    Raises:
        MqttProtocolError: an unknown property or one running past the data.
    """
    got = decode_varint(data, pos)
    if got is None:
        raise MqttProtocolError("truncated properties")
    length, pos = got
    end, out = pos + length, []
    while pos < end:
        pid = data[pos]
        kind = _PROPS.get(pid)
        start = pos + 1
        if kind is None:
            raise MqttProtocolError(f"unknown MQTT5 property 0x{pid:02x}")
        if kind in "bhi":
            stop = start + {"b": 1, "h": 2, "i": 4}[kind]
        elif kind == "v":
            vi = decode_varint(data, start)
            if vi is None:
                raise MqttProtocolError("truncated property")
            stop = vi[1]
        else:
            stop = start
            for _ in range(2 if kind == "p" else 1):
                stop += 2 + struct.unpack_from(">H", data, stop)[0]
        if stop > end:
            raise MqttProtocolError("property runs past its list")
        out.append((pid, start, stop))
        pos = stop
    return out, end


class _Bucket:
    """``rate`` per second, a burst of one second's worth."""

    def __init__(self, rate: float, clock: Callable[[], float]) -> None:
        self.rate, self.clock = rate, clock
        self.tokens, self.at = rate, clock()

    def take(self) -> bool:
        now = self.clock()
        self.tokens = min(self.rate, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class _Packets:
    """Splits a byte stream into whole MQTT packets (first byte, body)."""

    def __init__(self) -> None:
        self.buf = b""

    def feed(self, data: bytes) -> list[tuple[int, bytes, bytes]]:
        """[(first byte, body, the packet's bytes)] of every packet completed by ``data``."""
        self.buf += data
        out = []
        while len(self.buf) >= 2:
            got = decode_varint(self.buf, 1)
            if got is None:
                break
            length, start = got
            if len(self.buf) < start + length:
                break
            raw, self.buf = self.buf[:start + length], self.buf[start + length:]
            out.append((raw[0], raw[start:], raw))
        return out


class ConnectionQuotas:
    """The quotas of one bridged connection.

    Args:
        limits: the MQTT quotas in force (``Quotas.mqtt``; None = not limited).
        level: the CONNECT's protocol level (4: 3.1.1, 5: MQTT5).
        client_id: whom refusals are counted for.
        count: ``count(client_id, quota, n)`` notes refusals.
        sessions: client id -> the subscriptions its broker session holds (``Quotas.sessions``,
            shared by every connection): a connection whose CONNACK says "session present"
            starts from them, so a resumed persistent session's subscriptions still count
            towards the 50 (as on IoT Core, where they are part of the session); a new session
            starts from none. None: each connection counts from 0.
    """

    class Closed(Exception):
        """The connection must end; ``reply`` goes to the device first."""

        def __init__(self, reply: bytes, why: str) -> None:
            super().__init__(why)
            self.reply = reply

    def __init__(self, limits: dict[str, float | None], level: int, client_id: str,
                 count: Callable[[str, str, int], None], clock: Callable[[], float] = time.monotonic,
                 sessions: dict[str, set[str]] | None = None) -> None:
        self.limits, self.level, self.client_id, self._count = limits, level, client_id, count
        rate_in, rate_out = limits.get("PublishInPerSecond"), limits.get("PublishOutPerSecond")
        self._in = _Bucket(rate_in, clock) if rate_in else None
        self._out = _Bucket(rate_out, clock) if rate_out else None
        self._up, self._down = _Packets(), _Packets()
        self.subscriptions: set[str] = set()
        self._pending: dict[int, list[str]] = {}  # SUBSCRIBE packet id -> filters not yet SUBACKed
        self._connack_props: dict[int, bytes] = {}
        self._connack_seen = False
        self._sessions = sessions
        stored = limits.get("StoredMessagesPerSecond")
        self._stored = _Bucket(stored, clock) if stored else None
        self._replay = False  # delivering a resumed session's stored messages
        self._held: collections.deque[bytes] = collections.deque()
        self.wake: Callable[[], None] | None = None  # the bridge's: "held messages to release"

    def count(self, quota: str, n: int = 1) -> None:
        self._count(self.client_id, quota, n)

    # -- CONNECT / CONNACK ----------------------------------------------------------------
    def connect(self, data: bytes, end: int) -> bytes:
        """``data`` with the CONNECT (its first ``end`` bytes) adjusted to IoT Core's keep-alive
        and session-expiry bounds (same length: the fields are rewritten in place)."""
        buf = bytearray(data)
        start = decode_varint(buf, 1)[1]  # type: ignore[index]  # connect_info parsed it already
        pos = start + 2 + struct.unpack_from(">H", buf, start)[0] + 2  # after name, level, flags
        keep = struct.unpack_from(">H", buf, pos)[0]
        lo, hi = self.limits.get("KeepAliveMin"), self.limits.get("KeepAliveMax")
        new = keep
        if hi and (keep == 0 or keep > hi):
            new = int(hi)
        elif lo and keep < lo:
            new = int(lo)
        if new != keep:
            struct.pack_into(">H", buf, pos, new)
            if self.level == 5:
                self._connack_props[0x13] = struct.pack(">H", new)
        cap = self.limits.get("SessionExpiryMax")
        if self.level == 5:
            props, _ = properties(bytes(buf[:end]), pos + 2)
            for pid, a, _b in props:
                if pid == 0x11 and cap and struct.unpack_from(">I", buf, a)[0] > cap:
                    struct.pack_into(">I", buf, a, int(cap))
                    self._connack_props[0x11] = struct.pack(">I", int(cap))
            self._connack_props[0x29] = b"\x00"  # IoT Core has no subscription identifiers
        return bytes(buf)

    def _resume(self, body: bytes) -> None:
        """Take over the subscriptions of the broker's session for this client id when the
        CONNACK says it was resumed (Session Present); a new one starts empty."""
        if len(body) < 2 or body[1] != 0:
            return
        if body[0] & 0x01 and self._stored is not None:
            self._replay = True
        if self._sessions is None:
            return
        held = self._sessions.get(self.client_id) if body[0] & 0x01 else None
        if held is None:
            held = set()
        held |= self.subscriptions  # SUBACKed before the CONNACK was read (pipelined)
        self.subscriptions = self._sessions[self.client_id] = held

    def _connack(self, body: bytes) -> bytes:
        if self.level != 5 or len(body) < 3:
            return packet(CONNACK << 4, body)
        props, _ = properties(body, 2)
        kept = b"".join(bytes([pid]) + body[a:b] for pid, a, b in props if pid not in self._connack_props)
        added = b"".join(bytes([pid]) + v for pid, v in self._connack_props.items())
        plist = kept + added
        return packet(CONNACK << 4, body[:2] + encode_varint(len(plist)) + plist)

    # -- device -> broker -----------------------------------------------------------------
    def from_device(self, data: bytes) -> tuple[bytes, bytes]:
        """(bytes for the broker, replies for the device) for ``data`` from the device.

        Raises:
            ConnectionQuotas.Closed: a publish over the payload limit.
        """
        to_broker, to_device = [], []
        for first, body, raw in self._up.feed(data):
            kind = first >> 4
            if kind == PUBLISH:
                if not self._publish_in(first, body):
                    continue
            elif kind == SUBSCRIBE:
                refusal = self._subscribe(body)
                if refusal is not None:
                    to_device.append(refusal)
                    continue
            elif kind == UNSUBSCRIBE:
                self._unsubscribe(body)
            to_broker.append(raw)
        return b"".join(to_broker), b"".join(to_device)

    def _publish_in(self, first: int, body: bytes) -> bool:
        limit = self.limits.get("PayloadMax")
        if limit:
            pos = 2 + struct.unpack_from(">H", body, 0)[0] + (2 if first & 0x06 else 0)
            if self.level == 5:
                pos = properties(body, pos)[1]
            if len(body) - pos > limit:
                self.count("PayloadMax")
                raise self.Closed(packet(0xE0, b"\x95\x00") if self.level == 5 else b"",
                                  f"a publish of {len(body) - pos} bytes (IoT Core's payload limit is {int(limit)})")
        if self._in is not None and not self._in.take():
            self.count("PublishInPerSecond")
            return False
        return True

    def _subscribe(self, body: bytes) -> bytes | None:
        """None to forward the SUBSCRIBE, else the SUBACK refusing it."""
        pid = struct.unpack_from(">H", body, 0)[0]
        pos, has_id = 2, False
        if self.level == 5:
            props, pos = properties(body, 2)
            has_id = any(p == 0x0B for p, _a, _b in props)
        filters = []
        while pos < len(body):
            n = struct.unpack_from(">H", body, pos)[0]
            filters.append(body[pos + 2:pos + 2 + n].decode("utf-8", "replace"))
            pos += 2 + n + 1  # the options byte
        refused = 0x97 if self.level == 5 else 0x80
        code = None
        per = self.limits.get("TopicFiltersPerSubscribe")
        most = self.limits.get("SubscriptionsPerConnection")
        held = self.subscriptions.union(*self._pending.values())
        if has_id:
            code = 0xA1
            self.count("SubscriptionIdentifiers")
        elif per and len(filters) > per:
            code = refused
            self.count("TopicFiltersPerSubscribe")
        elif most and len(held | set(filters)) > most:
            code = refused
            self.count("SubscriptionsPerConnection")
        if code is None:
            self._pending[pid] = filters
            return None
        codes = bytes([code]) * len(filters)
        return packet(SUBACK << 4, struct.pack(">H", pid) + (b"\x00" if self.level == 5 else b"") + codes)

    def _unsubscribe(self, body: bytes) -> None:
        pos = properties(body, 2)[1] if self.level == 5 else 2
        while pos + 2 <= len(body):
            n = struct.unpack_from(">H", body, pos)[0]
            self.subscriptions.discard(body[pos + 2:pos + 2 + n].decode("utf-8", "replace"))
            pos += 2 + n

    # -- broker -> device -----------------------------------------------------------------
    def from_broker(self, data: bytes) -> tuple[bytes, bytes]:
        """(bytes for the device, replies for the broker) for ``data`` from the broker."""
        to_device, to_broker = [], []
        for first, body, raw in self._down.feed(data):
            kind = first >> 4
            if kind == CONNACK and not self._connack_seen:
                self._connack_seen = True
                self._resume(body)
                to_device.append(self._connack(body))
                continue
            if kind == PUBLISH and self._replay and first & 0x06:
                self._held.append(raw)
                if len(self._held) == 1 and self.wake is not None:
                    self.wake()
                continue
            if kind == PUBLISH and self._out is not None and not self._out.take():
                self.count("PublishOutPerSecond")
                if first & 0x06:  # QoS 1: acknowledge it for the device, as if delivered and lost
                    to_broker.append(packet(PUBACK << 4, body[2 + struct.unpack_from(">H", body, 0)[0]:][:2]))
                continue
            if kind == SUBACK:
                self._suback(body)
            to_device.append(raw)
        return b"".join(to_device), b"".join(to_broker)

    @property
    def holding(self) -> bool:
        """Stored messages of a resumed session wait for :meth:`release`."""
        return bool(self._held)

    def release(self) -> bytes:
        """The held stored messages whose turn has come (10 a second, within the outbound rate);
        the replay ends once none is left."""
        out = []
        while self._held and (self._stored is None or self._stored.take()):
            if self._out is not None and not self._out.take():
                break
            out.append(self._held.popleft())
        if not self._held:
            self._replay = False
        return b"".join(out)

    def _suback(self, body: bytes) -> None:
        pid = struct.unpack_from(">H", body, 0)[0]
        filters = self._pending.pop(pid, [])
        pos = properties(body, 2)[1] if self.level == 5 else 2
        for f, code in zip(filters, body[pos:], strict=False):
            if code < 0x80:
                self.subscriptions.add(f)
