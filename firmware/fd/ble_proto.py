# BLE provisioning protocol v1: framing, session keys, secure frames, chunks.
# Runs on MicroPython (cryptolib, hashlib, binascii) and on CPython (falls back to
# `cryptography` for AES). The host side (fleetdesk/ble/session.py) is a separate
# implementation on field libraries; tests/vectors/ble_v1.json ties the two together.
# See firmware/PROTOCOL.md for the wire format.

import binascii
import hashlib
import json

try:
    import cryptolib  # MicroPython

    def _aes_cbc(key, iv, data, encrypt):
        c = cryptolib.aes(key, 2, iv)
        return c.encrypt(data) if encrypt else c.decrypt(data)

except ImportError:  # CPython (scale simulator, tests)
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    def _aes_cbc(key, iv, data, encrypt):
        c = Cipher(algorithms.AES(key), modes.CBC(iv))
        op = c.encryptor() if encrypt else c.decryptor()
        return op.update(bytes(data)) + op.finalize()


VERSION = 1
SERVICE_UUID = "5704246a-5d4c-4f19-9b53-157d8824063d"
CTRL_UUID = "15ba8b82-df9a-46dc-865a-177a17ad9035"
WIFI_UUID = "20a62cd0-93ba-41e2-96b0-31b1aa131909"
CLOUD_UUID = "3a21768b-174a-41bc-8b25-b9c1ebfb7510"
BULK_UUID = "43c5e37d-b664-4b4a-aa33-032bbaf7133f"
# channel numbers (bound into every MAC so a frame can't be moved to another characteristic)
CH_CTRL = 0
CH_WIFI = 1
CH_CLOUD = 2
CH_BULK = 3
CHANNEL_UUIDS = (CTRL_UUID, WIFI_UUID, CLOUD_UUID, BULK_UUID)

MAX_MSG = 1024  # largest reassembled message a device accepts
FILES = ("ca", "cert", "key", "csr")
MAX_FILE = 8192

T_PLAIN = 0x00
T_SECURE = 0x01
F_FIRST = 0x80
F_LAST = 0x40
DIR_HOST = b"H"
DIR_DEVICE = b"D"
TAG_LEN = 16
LABEL = b"FD-BLE-1"


class ProtoError(Exception):
    # code: short machine-readable reason sent back in error replies
    def __init__(self, code, msg):
        super().__init__(msg)
        self.code = code
        self.msg = msg


def hexs(b):
    return binascii.hexlify(b).decode()


def unhex(s):
    return binascii.unhexlify(s)


_PADS = {}


def hmac_sha256(key, msg):
    pads = _PADS.get(key)
    if pads is None:
        k = key
        if len(k) > 64:
            k = hashlib.sha256(k).digest()
        k = k + b"\x00" * (64 - len(k))
        pads = (bytes([b ^ 0x36 for b in k]), bytes([b ^ 0x5C for b in k]))
        if len(_PADS) > 16:
            _PADS.clear()
        _PADS[bytes(key)] = pads
    ikey, okey = pads
    inner = hashlib.sha256(ikey + msg).digest()
    return hashlib.sha256(okey + inner).digest()


def consteq(a, b):
    if len(a) != len(b):
        return False
    r = 0
    for i in range(len(a)):
        r |= a[i] ^ b[i]
    return r == 0


def _crc32_soft(data):
    # ports built without binascii.crc32: bitwise CRC-32 (IEEE), slow but small
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0xEDB88320 & -(crc & 1))
    return crc ^ 0xFFFFFFFF


def crc32(data):
    if hasattr(binascii, "crc32"):
        return binascii.crc32(data) & 0xFFFFFFFF
    return _crc32_soft(data)


def derive(pop, host_nonce, device_nonce):
    """Session keys from the PoP and both nonces -> dict of 32-byte keys."""
    session = hmac_sha256(pop, LABEL + host_nonce + device_nonce)
    return {
        "session": session,
        "enc": hmac_sha256(session, b"enc"),
        "mac": hmac_sha256(session, b"mac"),
        "iv": hmac_sha256(session, b"iv"),
        "host_proof": hmac_sha256(session, b"host-proof"),
        "device_proof": hmac_sha256(session, b"device-proof"),
    }


def _pad(data):
    n = 16 - len(data) % 16
    return data + bytes([n]) * n


def _unpad(data):
    if not data or len(data) % 16:
        raise ProtoError("frame", "bad ciphertext length")
    n = data[-1]
    if n < 1 or n > 16 or data[-n:] != bytes([n]) * n:
        raise ProtoError("frame", "bad padding")
    return data[:-n]


class SecureChannel:
    """AES-256-CBC + HMAC-SHA256 (encrypt-then-MAC) with per-direction counters.

    Frame: 0x01 | ctr (4, big endian) | AES-CBC(pad(plaintext)) | tag (16).
    IV = HMAC(k_iv, dir|chan|ctr)[:16]; tag = HMAC(k_mac, dir|chan|ctr|ct)[:16].
    A frame is accepted only if its counter is above the last one accepted.
    """

    def __init__(self, keys, me, peer):
        self.k_enc = keys["enc"]
        self.k_mac = keys["mac"]
        self.k_iv = keys["iv"]
        self.me = me
        self.peer = peer
        self.tx_ctr = 0
        self.rx_ctr = 0

    def _iv(self, direction, chan, ctr_b):
        return hmac_sha256(self.k_iv, direction + bytes([chan]) + ctr_b)[:16]

    def seal(self, chan, plaintext, ctr=None):
        if ctr is None:
            self.tx_ctr += 1
            ctr = self.tx_ctr
        ctr_b = ctr.to_bytes(4, "big")
        ct = _aes_cbc(self.k_enc, self._iv(self.me, chan, ctr_b), _pad(plaintext), True)
        tag = hmac_sha256(self.k_mac, self.me + bytes([chan]) + ctr_b + ct)[:TAG_LEN]
        return bytes([T_SECURE]) + ctr_b + ct + tag

    def open(self, chan, frame):
        if len(frame) < 1 + 4 + 16 + TAG_LEN or frame[0] != T_SECURE:
            raise ProtoError("frame", "short or non-secure frame")
        ctr_b = bytes(frame[1:5])
        ct = bytes(frame[5:-TAG_LEN])
        tag = bytes(frame[-TAG_LEN:])
        if len(ct) % 16:
            raise ProtoError("frame", "bad ciphertext length")
        want = hmac_sha256(self.k_mac, self.peer + bytes([chan]) + ctr_b + ct)[:TAG_LEN]
        if not consteq(tag, want):
            raise ProtoError("auth", "message authentication failed")
        ctr = int.from_bytes(ctr_b, "big")
        if ctr <= self.rx_ctr:
            raise ProtoError("replay", "replayed or out-of-order frame")
        pt = _unpad(_aes_cbc(self.k_enc, self._iv(self.peer, chan, ctr_b), ct, False))
        self.rx_ctr = ctr
        return pt


def plain(obj):
    return bytes([T_PLAIN]) + json.dumps(obj).encode()


def fragment(msg, size):
    """Split a message into GATT writes/notifications of at most `size` bytes.

    First fragment: flags | total length (2, big endian) | data; others: flags | data.
    flags: 0x80 first, 0x40 last.
    """
    if size < 4:
        raise ValueError("fragment size too small")
    out = []
    total = len(msg)
    pos = 0
    first = True
    while first or pos < total:
        room = size - 3 if first else size - 1
        part = msg[pos:pos + room]
        pos += len(part)
        flags = (F_FIRST if first else 0) | (F_LAST if pos >= total else 0)
        if first:
            out.append(bytes([flags]) + total.to_bytes(2, "big") + part)
        else:
            out.append(bytes([flags]) + part)
        first = False
    return out


class Reassembler:
    """Rebuilds one message from fragments; raises ProtoError on anything malformed."""

    def __init__(self, limit=MAX_MSG):
        self.limit = limit
        self.buf = None
        self.total = 0

    def feed(self, frag):
        if not frag:
            self.buf = None
            raise ProtoError("frame", "empty fragment")
        flags = frag[0]
        if flags & 0x3F:
            self.buf = None
            raise ProtoError("frame", "bad fragment flags")
        if flags & F_FIRST:
            if len(frag) < 3:
                self.buf = None
                raise ProtoError("frame", "short first fragment")
            self.total = int.from_bytes(bytes(frag[1:3]), "big")
            if self.total > self.limit:
                self.buf = None
                raise ProtoError("size", "message too large (%d > %d)" % (self.total, self.limit))
            self.buf = bytearray(frag[3:])
        else:
            if self.buf is None:
                raise ProtoError("frame", "continuation without a first fragment")
            self.buf.extend(frag[1:])
        if len(self.buf) > self.total:
            self.buf = None
            raise ProtoError("frame", "fragment longer than announced")
        if flags & F_LAST:
            buf = self.buf
            self.buf = None
            if len(buf) != self.total:
                raise ProtoError("frame", "message shorter than announced")
            return bytes(buf)
        return None


CHUNK_HDR = 10  # b"C" | file (1) | offset (4) | crc32 (4)


def pack_chunk(file_idx, offset, data, crc=None):
    if crc is None:
        crc = crc32(data)
    return b"C" + bytes([file_idx]) + offset.to_bytes(4, "big") + crc.to_bytes(4, "big") + data


def unpack_chunk(pt):
    if len(pt) < CHUNK_HDR or pt[0] != 0x43:
        raise ProtoError("frame", "bad chunk header")
    idx = pt[1]
    if idx >= len(FILES):
        raise ProtoError("file", "unknown file index %d" % idx)
    offset = int.from_bytes(bytes(pt[2:6]), "big")
    crc = int.from_bytes(bytes(pt[6:10]), "big")
    return idx, offset, crc, bytes(pt[CHUNK_HDR:])


def chunk_size(mtu):
    """Chunk payload size so one chunk fits one GATT write (min 64, for tiny MTUs)."""
    room = mtu - 3 - 3 - 4 - TAG_LEN  # ATT header, fragment header, counter, tag
    pt = (room // 16) * 16 - 1 - CHUNK_HDR
    if pt < 64:
        return 64
    return min(pt, MAX_MSG - 64)
