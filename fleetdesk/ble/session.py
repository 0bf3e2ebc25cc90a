"""Host side of the BLE provisioning protocol v1 framing and crypto (firmware/PROTOCOL.md).

An independent implementation on field libraries (stdlib ``hmac``/``hashlib``/``zlib``,
``cryptography`` AES-CBC) of what firmware/fd/ble_proto.py does on the device; the
shared test vectors in tests/vectors/ble_v1.json pin both to the same bytes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import zlib
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

VERSION = 1
SERVICE_UUID = "5704246a-5d4c-4f19-9b53-157d8824063d"
CTRL_UUID = "15ba8b82-df9a-46dc-865a-177a17ad9035"
WIFI_UUID = "20a62cd0-93ba-41e2-96b0-31b1aa131909"
CLOUD_UUID = "3a21768b-174a-41bc-8b25-b9c1ebfb7510"
BULK_UUID = "43c5e37d-b664-4b4a-aa33-032bbaf7133f"
CH_CTRL, CH_WIFI, CH_CLOUD, CH_BULK = 0, 1, 2, 3
CHANNEL_UUIDS = (CTRL_UUID, WIFI_UUID, CLOUD_UUID, BULK_UUID)
FILES = ("ca", "cert", "key", "csr")
MAX_MSG = 1024
T_PLAIN, T_SECURE = 0x00, 0x01
F_FIRST, F_LAST = 0x80, 0x40
DIR_HOST, DIR_DEVICE = b"H", b"D"
TAG_LEN = 16
CHUNK_HDR = 10
LABEL = b"FD-BLE-1"
COMPANY_ID = 0xFFFF


class FrameError(ValueError):
    """A frame failed to parse, authenticate or was replayed."""


def _hmac(key: bytes, msg: bytes) -> bytes:
    return hmac.new(key, msg, hashlib.sha256).digest()


@dataclass(frozen=True)
class SessionKeys:
    """Keys of one BLE session, derived from the PoP and both nonces."""

    session: bytes
    enc: bytes
    mac: bytes
    iv: bytes
    host_proof: bytes
    device_proof: bytes

    @classmethod
    def derive(cls, pop: bytes, host_nonce: bytes, device_nonce: bytes) -> "SessionKeys":
        """session = HMAC-SHA256(PoP, "FD-BLE-1" | host nonce | device nonce); subkeys by label."""
        s = _hmac(pop, LABEL + host_nonce + device_nonce)
        return cls(s, _hmac(s, b"enc"), _hmac(s, b"mac"), _hmac(s, b"iv"),
                   _hmac(s, b"host-proof"), _hmac(s, b"device-proof"))


class SecureChannel:
    """AES-256-CBC + truncated HMAC-SHA256 (encrypt-then-MAC), counters against replay."""

    def __init__(self, keys: SessionKeys, me: bytes = DIR_HOST, peer: bytes = DIR_DEVICE) -> None:
        self.keys = keys
        self.me = me
        self.peer = peer
        self.tx_ctr = 0
        self.rx_ctr = 0

    def _iv(self, direction: bytes, chan: int, ctr_b: bytes) -> bytes:
        return _hmac(self.keys.iv, direction + bytes([chan]) + ctr_b)[:16]

    def seal(self, chan: int, plaintext: bytes, ctr: int | None = None) -> bytes:
        """Encrypt and authenticate one message for channel ``chan``."""
        if ctr is None:
            self.tx_ctr += 1
            ctr = self.tx_ctr
        ctr_b = ctr.to_bytes(4, "big")
        padder = padding.PKCS7(128).padder()
        padded = padder.update(plaintext) + padder.finalize()
        enc = Cipher(algorithms.AES(self.keys.enc), modes.CBC(self._iv(self.me, chan, ctr_b))).encryptor()
        ct = enc.update(padded) + enc.finalize()
        tag = _hmac(self.keys.mac, self.me + bytes([chan]) + ctr_b + ct)[:TAG_LEN]
        return bytes([T_SECURE]) + ctr_b + ct + tag

    def open(self, chan: int, frame: bytes) -> bytes:
        """Check and decrypt one message from the peer; raises FrameError."""
        if len(frame) < 1 + 4 + 16 + TAG_LEN or frame[0] != T_SECURE:
            raise FrameError("short or non-secure frame")
        ctr_b, ct, tag = frame[1:5], frame[5:-TAG_LEN], frame[-TAG_LEN:]
        if len(ct) % 16:
            raise FrameError("bad ciphertext length")
        if not hmac.compare_digest(tag, _hmac(self.keys.mac, self.peer + bytes([chan]) + ctr_b + ct)[:TAG_LEN]):
            raise FrameError("message authentication failed")
        ctr = int.from_bytes(ctr_b, "big")
        if ctr <= self.rx_ctr:
            raise FrameError("replayed or out-of-order frame")
        dec = Cipher(algorithms.AES(self.keys.enc), modes.CBC(self._iv(self.peer, chan, ctr_b))).decryptor()
        unpadder = padding.PKCS7(128).unpadder()
        try:
            pt = unpadder.update(dec.update(ct) + dec.finalize()) + unpadder.finalize()
        except ValueError as exc:
            raise FrameError("bad padding") from exc
        self.rx_ctr = ctr
        return pt


def plain(obj: dict[str, Any]) -> bytes:
    """A plaintext control message (handshake/status only)."""
    return bytes([T_PLAIN]) + json.dumps(obj).encode()


def fragment(msg: bytes, size: int) -> list[bytes]:
    """Split a message into writes of at most ``size`` bytes (see PROTOCOL.md §2)."""
    if size < 4:
        raise ValueError("fragment size too small")
    out: list[bytes] = []
    pos, total, first = 0, len(msg), True
    while first or pos < total:
        part = msg[pos:pos + (size - 3 if first else size - 1)]
        pos += len(part)
        flags = (F_FIRST if first else 0) | (F_LAST if pos >= total else 0)
        out.append(bytes([flags]) + (total.to_bytes(2, "big") if first else b"") + part)
        first = False
    return out


class Reassembler:
    """Rebuilds messages from notification fragments."""

    def __init__(self, limit: int = 65535) -> None:
        self.limit = limit
        self.buf: bytearray | None = None
        self.total = 0

    def feed(self, frag: bytes) -> bytes | None:
        """Add one fragment; returns the message when complete. Raises FrameError."""
        if not frag or frag[0] & 0x3F:
            self.buf = None
            raise FrameError("bad fragment")
        if frag[0] & F_FIRST:
            if len(frag) < 3:
                raise FrameError("short first fragment")
            self.total = int.from_bytes(frag[1:3], "big")
            self.buf = bytearray(frag[3:])
        elif self.buf is None:
            raise FrameError("continuation without a first fragment")
        else:
            self.buf.extend(frag[1:])
        if len(self.buf) > self.total:
            self.buf = None
            raise FrameError("fragment longer than announced")
        if frag[0] & F_LAST:
            buf, self.buf = self.buf, None
            if len(buf) != self.total:
                raise FrameError("message shorter than announced")
            return bytes(buf)
        return None


def crc32(data: bytes) -> int:
    """CRC-32 (IEEE, as zlib/binascii) of a chunk."""
    return zlib.crc32(data) & 0xFFFFFFFF


def pack_chunk(file_idx: int, offset: int, data: bytes, crc: int | None = None) -> bytes:
    """Bulk chunk plaintext: b"C" | file | offset (4) | crc32 (4) | data."""
    crc = crc32(data) if crc is None else crc
    return b"C" + bytes([file_idx]) + offset.to_bytes(4, "big") + crc.to_bytes(4, "big") + data


def chunk_size(mtu: int) -> int:
    """Chunk payload that makes one chunk fit one GATT write (at least 64 bytes)."""
    room = mtu - 3 - 3 - 4 - TAG_LEN
    pt = (room // 16) * 16 - 1 - CHUNK_HDR
    return 64 if pt < 64 else min(pt, MAX_MSG - 64)


def uuid_le(uuid: str) -> bytes:
    """128-bit UUID -> the 16 little-endian bytes used in advertising data."""
    return bytes.fromhex(uuid.replace("-", ""))[::-1]
