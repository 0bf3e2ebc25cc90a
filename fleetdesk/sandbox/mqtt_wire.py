"""MQTT wire-format pieces shared by the sandbox's internal client and its WSS front.

Only what both need: the variable-length "remaining length" integer, length-prefixed
strings and the fixed header. Everything else about a packet stays with its user.
"""

from __future__ import annotations

import struct


class MqttProtocolError(ValueError):
    """The bytes are not usable MQTT (a malformed length, or the wrong first packet)."""


def encode_varint(n: int) -> bytes:
    """``n`` as an MQTT variable byte integer (7 bits a byte, high bit = more follow)."""
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def decode_varint(data: bytes | bytearray, pos: int) -> tuple[int, int] | None:
    """The variable byte integer at ``data[pos:]``.

    Returns:
        (value, position after it), or None when ``data`` ends before the integer does.

    Raises:
        MqttProtocolError: more than four bytes (the MQTT maximum).
    """
    value, shift = 0, 0
    for i in range(4):
        if pos + i >= len(data):
            return None
        b = data[pos + i]
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos + i + 1
        shift += 7
    raise MqttProtocolError("malformed remaining length")


def connect_frame(data: bytes | bytearray, max_length: int | None = None) -> tuple[bytes, int] | None:
    """The body of the MQTT CONNECT at the start of ``data`` and the bytes it takes.

    Returns:
        (body, bytes consumed from ``data``), or None while the packet is incomplete.

    Raises:
        MqttProtocolError: the data does not start with a CONNECT, or it is over ``max_length``.
    """
    if not data:
        return None
    if data[0] != 0x10:
        raise MqttProtocolError("the first MQTT packet must be CONNECT")
    rl = decode_varint(data, 1)
    if rl is None:
        return None
    length, start = rl
    if max_length is not None and length > max_length:
        raise MqttProtocolError("CONNECT too large")
    if len(data) < start + length:
        return None
    return bytes(data[start:start + length]), start + length


def mqtt_string(s: str | bytes) -> bytes:
    """A UTF-8 string (``str`` is encoded) or binary field with its two-byte length prefix."""
    b = s.encode() if isinstance(s, str) else s
    return struct.pack(">H", len(b)) + b


def packet(kind: int, body: bytes) -> bytes:
    """A whole packet: the first header byte ``kind``, the remaining length, then ``body``."""
    return bytes([kind]) + encode_varint(len(body)) + body


def topic_matches(topic_filter: str, topic: str) -> bool:
    """MQTT matching (``#`` and ``+`` never match a first level starting with ``$``)."""
    f, t = topic_filter.split("/"), topic.split("/")
    if t and t[0].startswith("$") and f and f[0] in ("#", "+"):
        return False
    for i, level in enumerate(f):
        if level == "#":
            return True
        if i >= len(t) or (level != "+" and level != t[i]):
            return False
    return len(f) == len(t)
