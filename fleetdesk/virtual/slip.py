"""SLIP framing as the ESP serial bootloader uses it (0xC0 delimiters, 0xDB escapes).

Decoding works on whole chunks with ``bytes.find``/``replace`` (no per-byte Python
loop), so one process can feed many boards at full speed.
"""

from __future__ import annotations

END = b"\xc0"


def encode(payload: bytes) -> bytes:
    """Frame one packet: ``C0 <escaped payload> C0``."""
    return b"\xc0" + payload.replace(b"\xdb", b"\xdb\xdd").replace(b"\xc0", b"\xdb\xdc") + b"\xc0"


def unescape(raw: bytes | bytearray) -> bytes:
    """Undo SLIP escaping (DB DC -> C0, DB DD -> DB); escape pairs never overlap."""
    if b"\xdb" not in raw:
        return bytes(raw)
    return bytes(raw).replace(b"\xdb\xdc", b"\xc0").replace(b"\xdb\xdd", b"\xdb")


class SlipDecoder:
    """Incremental decoder: feed bytes, get complete packets and the noise between them.

    Bytes outside a frame (a terminal typing, line noise) are returned as ``noise`` so a
    board can tell a serial terminal from the bootloader protocol.
    """

    def __init__(self) -> None:
        self._partial: bytearray | None = None  # escaped bytes of the frame in progress

    def feed(self, data: bytes) -> tuple[list[bytes], bytes]:
        """Consume ``data``; return (complete packets, bytes seen outside any frame)."""
        packets: list[bytes] = []
        noise = bytearray()
        pos, n = 0, len(data)
        partial = self._partial
        while pos < n:
            end = data.find(END, pos)
            if partial is None:
                if end < 0:
                    noise += data[pos:]
                    break
                noise += data[pos:end]
                partial = bytearray()
            else:
                if end < 0:
                    partial += data[pos:]
                    break
                partial += data[pos:end]
                if partial:
                    packets.append(unescape(partial))
                    partial = None
                # an empty frame (C0 C0) means we were out of sync: stay in a frame
            pos = end + 1
        self._partial = partial
        return packets, bytes(noise)
