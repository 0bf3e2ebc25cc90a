"""Read a board's identity straight from its flash, touching only the blocks littlefs needs.

The station asks on every identity run "does this board already carry an identity?" before it
decides what to write. Reading the whole ``vfs`` partition would cost seconds per board, so
littlefs-python mounts the partition through a context whose ``read`` fetches flash lazily,
in small chunks, over the esptool connection the worker already holds: the superblock, the
``/certs`` directory and the four identity files, typically a few KB.

    >>> probe = probe_identity(esp.read_flash, offset=0x200000, size=0x200000)
    >>> probe.found, probe.thing, probe.certificate_id, probe.bytes_read
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Callable

from littlefs import LittleFS, UserContext

from fleetdesk.boards.fsimage import BLOCK_SIZE, LFS_PARAMS
from fleetdesk.boards.vfs import IDENTITY_PATHS
CHUNK = 256  # bytes per flash read: measured best on a throttled board (each read ~7 ms + 45 us/byte)


class _ReadOnly(Exception):
    pass


class _LazyFlash(UserContext):
    """A littlefs context over ``read(address, size)`` of a flash region, read-only, cached."""

    def __init__(self, read: Callable[[int, int], bytes], offset: int, size: int, chunk: int = CHUNK) -> None:
        self.buffer = bytearray()  # unused; UserContext's attribute
        self.in_size = size
        self._read, self._offset, self._size, self._chunk = read, offset, size, chunk
        self._cache: dict[int, bytes] = {}
        self.bytes_read = 0
        self.reads = 0

    def _chunk_at(self, index: int) -> bytes:
        data = self._cache.get(index)
        if data is None:
            start = index * self._chunk
            n = min(self._chunk, self._size - start)
            data = bytes(self._read(self._offset + start, n))
            self._cache[index] = data
            self.bytes_read += n
            self.reads += 1
        return data

    def read(self, cfg, block: int, off: int, size: int) -> bytearray:
        start = block * cfg.block_size + off
        out = bytearray()
        pos = start
        while pos < start + size:
            i = pos // self._chunk
            data = self._chunk_at(i)
            lo = pos - i * self._chunk
            take = min(len(data) - lo, start + size - pos)
            out += data[lo:lo + take]
            pos += take
        return out

    def prog(self, cfg, block, off, data) -> int:
        raise _ReadOnly("the probe never writes")

    def erase(self, cfg, block) -> int:
        raise _ReadOnly("the probe never erases")


@dataclass
class BoardIdentity:
    """What a board's vfs partition says about its identity.

    Attributes:
        found: a complete, well-formed identity is on the board.
        reason: why not, when not found ("erased", "not littlefs", "no /config.json", ...).
        files: path -> bytes of the identity files read (all four when found, else the ones
            present on a damaged identity); may hold the private key.
        thing, product: from the board's /config.json.
        certificate_id: SHA-256 of the certificate's DER, as AWS IoT names certificates.
        bytes_read, reads: flash traffic the probe cost.
    """

    found: bool
    reason: str = ""
    files: dict = field(default_factory=dict, repr=False)
    thing: str | None = None
    product: str | None = None
    certificate_id: str | None = None
    bytes_read: int = 0
    reads: int = 0

    def summary(self) -> dict:
        """Everything but the files (safe to journal and to show)."""
        return {"found": self.found, "reason": self.reason, "thing": self.thing, "product": self.product,
                "certificate_id": self.certificate_id, "bytes_read": self.bytes_read, "reads": self.reads}


def probe_identity(read: Callable[[int, int], bytes], offset: int, size: int) -> BoardIdentity:
    """Mount the littlefs partition at ``offset`` read-only through ``read`` and pick out the identity.

    Args:
        read: ``fn(address, length) -> bytes`` (esptool's ``ESPLoader.read_flash``).
        offset, size: the vfs partition.
    """
    ctx = _LazyFlash(read, offset, size)
    result = _probe(ctx, size)
    result.bytes_read, result.reads = ctx.bytes_read, ctx.reads
    return result


def _probe(ctx: _LazyFlash, size: int) -> BoardIdentity:
    head = ctx.read(LFS_PARAMS_CFG, 0, 0, 64)
    if head.count(0xFF) == len(head) and ctx.read(LFS_PARAMS_CFG, 1, 0, 64).count(0xFF) == 64:
        return BoardIdentity(False, "erased")
    try:
        fs = LittleFS(context=ctx, block_count=size // BLOCK_SIZE, mount=False, **LFS_PARAMS)
        fs.mount()
    except Exception as exc:  # noqa: BLE001 - anything littlefs refuses is "no filesystem here"
        return BoardIdentity(False, f"not littlefs ({type(exc).__name__})")
    files: dict[str, bytes] = {}
    missing = []
    for path in IDENTITY_PATHS:
        try:
            with fs.open(path, "rb") as fh:
                files[path] = fh.read()
        except Exception:  # noqa: BLE001 - missing or unreadable
            missing.append(path)
    if missing:  # what is there is still returned: worth a backup before it is overwritten
        return BoardIdentity(False, f"no {missing[0]}", files)
    try:
        config = json.loads(files["/config.json"])
        from cryptography import x509

        x509.load_der_x509_certificate(files["/certs/cert.der"])
    except Exception as exc:  # noqa: BLE001
        return BoardIdentity(False, f"damaged identity ({type(exc).__name__})", files)
    if not isinstance(config, dict) or not config.get("thing_name") or not all(files.values()):
        return BoardIdentity(False, "incomplete identity", files)
    return BoardIdentity(True, "", files, config["thing_name"], config.get("product"),
                         hashlib.sha256(files["/certs/cert.der"]).hexdigest())


class _Cfg:
    block_size = BLOCK_SIZE


LFS_PARAMS_CFG = _Cfg()
