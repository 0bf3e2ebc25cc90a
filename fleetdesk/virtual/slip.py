"""SLIP framing as the ESP serial bootloader uses it (0xC0 delimiters, 0xDB escapes)."""

from __future__ import annotations

END, ESC, ESC_END, ESC_ESC = 0xC0, 0xDB, 0xDC, 0xDD


def encode(payload: bytes) -> bytes:
    """Frame one packet: ``C0 <escaped payload> C0``."""
    return b"\xc0" + payload.replace(b"\xdb", b"\xdb\xdd").replace(b"\xc0", b"\xdb\xdc") + b"\xc0"


class SlipDecoder:
    """Incremental decoder: feed bytes, get complete packets and the noise between them.

    Bytes outside a frame (a terminal typing, line noise) are returned as ``noise`` so a
    board can tell a serial terminal from the bootloader protocol.
    """

    def __init__(self) -> None:
        self._frame: bytearray | None = None
        self._escape = False

    def feed(self, data: bytes) -> tuple[list[bytes], bytes]:
        """Consume ``data``; return (complete packets, bytes seen outside any frame)."""
        packets: list[bytes] = []
        noise = bytearray()
        frame = self._frame
        for b in data:
            if frame is None:
                if b == END:
                    frame = bytearray()
                else:
                    noise.append(b)
                continue
            if self._escape:
                self._escape = False
                frame.append(END if b == ESC_END else ESC if b == ESC_ESC else b)
            elif b == ESC:
                self._escape = True
            elif b == END:
                if frame:
                    packets.append(bytes(frame))
                    frame = None
                # an empty frame (C0 C0) means we were out of sync: stay in a frame
            else:
                frame.append(b)
        self._frame = frame
        return packets, bytes(noise)
