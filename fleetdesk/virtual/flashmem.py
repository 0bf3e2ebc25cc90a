"""A virtual board's SPI flash: a file in the state dir, erased = 0xFF.

The file is memory-mapped (``mmap``, portable to Windows and macOS); reads and writes are
slices of the map, so the contents persist across board restarts exactly like a real
module's flash.
"""

from __future__ import annotations

import mmap
import os
from pathlib import Path

from fleetdesk.errors import BoardError
from fleetdesk.virtual.spiflash import JEDEC_CAPACITY, SpiNorChip

SECTOR = 0x1000
_ERASE_CHUNK = b"\xff" * 0x10000


class FlashRangeError(BoardError):
    """An access past the end of the flash chip."""


class FlashMemory:
    """File-backed NOR flash of a fixed size.

    Args:
        path: backing file; created erased (all 0xFF) when missing or resized.
        size: flash size in bytes (1, 2, 4, 8 or 16 MB).
    """

    def __init__(self, path: Path, size: int = 4 << 20) -> None:
        if size not in JEDEC_CAPACITY:
            raise BoardError(f"Unsupported flash size {size} bytes", "use 1, 2, 4, 8 or 16 MB")
        self.path = Path(path)
        self.size = size
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fresh = not self.path.exists()
        with open(self.path, "ab"):
            pass
        os.chmod(self.path, 0o600)
        self._file = open(self.path, "r+b")  # kept open for the map's lifetime
        current = os.fstat(self._file.fileno()).st_size
        if fresh or current != size:
            self._file.truncate(0)
            self._file.write(b"\xff" * size)
            self._file.flush()
        self._mm: mmap.mmap | None = mmap.mmap(self._file.fileno(), size)
        self.chip = SpiNorChip(size)

    @property
    def _map(self) -> mmap.mmap:
        if self._mm is None:
            raise ValueError(f"the flash file {self.path} is closed")
        return self._mm

    @property
    def jedec_id(self) -> int:
        """RDID answer: manufacturer 0xEF (Winbond), device 0x40, capacity byte."""
        return self.chip.jedec_id

    def _check(self, offset: int, length: int) -> None:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise FlashRangeError(
                f"Flash access {offset:#x}+{length:#x} is past the end of {self.size >> 20} MB flash",
                "check the offset and the board's flash size",
            )

    def read(self, offset: int, length: int) -> bytes:
        """Read ``length`` bytes at ``offset``."""
        self._check(offset, length)
        return self._map[offset : offset + length]

    def write(self, offset: int, data: bytes) -> None:
        """Store ``data`` at ``offset`` as is (emulator side: a filesystem image written back)."""
        self._check(offset, len(data))
        self._map[offset : offset + len(data)] = data

    def program(self, offset: int, data: bytes) -> None:
        """Page-program ``data`` at ``offset`` as NOR flash does: bits only go from 1 to 0.

        The new contents are ``old AND data``, so 0xFF padding (esptool pads uncompressed
        blocks to the block size) leaves whatever is already there, erased or not.
        """
        n = len(data)
        self._check(offset, n)
        old = self._map[offset : offset + n]
        if old != b"\xff" * n:
            data = (int.from_bytes(old, "little") & int.from_bytes(data, "little")).to_bytes(n, "little")
        self._map[offset : offset + n] = data

    def erase(self, offset: int, length: int) -> None:
        """Set ``length`` bytes from ``offset`` to 0xFF."""
        self._check(offset, length)
        end = offset + length
        while offset < end:
            n = min(len(_ERASE_CHUNK), end - offset)
            self._map[offset : offset + n] = _ERASE_CHUNK[:n]
            offset += n

    def erase_sectors(self, offset: int, length: int) -> None:
        """Erase every 4 KB sector touched by ``[offset, offset+length)``."""
        start = offset - offset % SECTOR
        end = min(self.size, -(-(offset + length) // SECTOR) * SECTOR)
        if end > start:
            self.erase(start, end - start)

    def close(self) -> None:
        """Flush and release the backing file."""
        if self._mm is not None:
            self._mm.flush()
            self._mm.close()
            self._mm = None
            self._file.close()
