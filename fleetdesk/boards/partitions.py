"""ESP-IDF partition tables: parse and build the binary at flash offset 0x8000.

Format (ESP-IDF ``gen_esp32part.py``): 32-byte entries ``<2sBBLL16sL`` (magic AA 50,
type, subtype, offset, size, label, flags), then an MD5 entry (EB EB, 14 x FF, MD5 of
the entries before it), then 0xFF up to 0xC00 bytes.
"""

from __future__ import annotations

import csv
import hashlib
import io
import struct
from dataclasses import dataclass

from fleetdesk.errors import BoardError

TABLE_OFFSET = 0x8000
TABLE_SIZE = 0xC00
ENTRY = struct.Struct("<2sBBLL16sL")
MAGIC = b"\xaa\x50"
MD5_MAGIC = b"\xeb\xeb"

TYPES = {"app": 0x00, "data": 0x01}
SUBTYPES = {
    0x00: {"factory": 0x00, "test": 0x20, **{f"ota_{i}": 0x10 + i for i in range(16)}},
    0x01: {"ota": 0x00, "phy": 0x01, "nvs": 0x02, "coredump": 0x03, "nvs_keys": 0x04,
           "efuse": 0x05, "undefined": 0x06, "esphttpd": 0x80, "fat": 0x81, "spiffs": 0x82,
           "littlefs": 0x83},
}


class PartitionTableError(BoardError):
    """A partition table is missing, corrupt or does not fit the flash."""


@dataclass(frozen=True)
class Partition:
    """One partition table entry."""

    label: str
    type: int
    subtype: int
    offset: int
    size: int
    flags: int = 0

    @property
    def type_name(self) -> str:
        return {v: k for k, v in TYPES.items()}.get(self.type, f"{self.type:#x}")

    @property
    def subtype_name(self) -> str:
        names = {v: k for k, v in SUBTYPES.get(self.type, {}).items()}
        return names.get(self.subtype, f"{self.subtype:#x}")

    @property
    def end(self) -> int:
        return self.offset + self.size


def parse(data: bytes, *, strict: bool = True) -> list[Partition]:
    """Parse a binary partition table (as read from flash at 0x8000).

    Args:
        data: the table bytes.
        strict: refuse a table with a bad MD5 entry or no entries; with False, return the
            entries read so far (possibly none), so checks can name what else is wrong.

    Raises:
        PartitionTableError: (strict only) no valid entries, or the MD5 entry does not match.
    """
    parts: list[Partition] = []
    for i in range(0, min(len(data), TABLE_SIZE) - ENTRY.size + 1, ENTRY.size):
        raw = data[i : i + ENTRY.size]
        if raw[:2] == MD5_MAGIC:
            if strict and hashlib.md5(data[:i]).digest() != raw[16:32]:
                raise PartitionTableError(
                    "Partition table MD5 mismatch", "re-flash the partition table at 0x8000"
                )
            break
        if raw[:2] != MAGIC:
            break
        _, ptype, subtype, offset, size, label, flags = ENTRY.unpack(raw)
        parts.append(Partition(label.rstrip(b"\x00").decode("ascii", "replace"), ptype, subtype,
                               offset, size, flags))
    if not parts and strict:
        raise PartitionTableError(
            "No valid partition table found", "flash a bundle that includes the partition table at 0x8000"
        )
    return parts


def build(parts: list[Partition], flash_size: int | None = None) -> bytes:
    """Build the binary table (0xC00 bytes, with the MD5 entry).

    Raises:
        PartitionTableError: overlapping or misaligned partitions, or beyond ``flash_size``.
    """
    ordered = sorted(parts, key=lambda p: p.offset)
    prev_end = TABLE_OFFSET + 0x1000
    for p in ordered:
        if p.offset < prev_end:
            raise PartitionTableError(f"Partition {p.label!r} at {p.offset:#x} overlaps the one before it",
                                      "fix the offsets in the partition CSV")
        if p.offset % 0x1000 or (p.type == TYPES["app"] and p.offset % 0x10000):
            raise PartitionTableError(f"Partition {p.label!r} at {p.offset:#x} is misaligned",
                                      "data partitions need 4 KB alignment, app partitions 64 KB")
        if flash_size is not None and p.end > flash_size:
            raise PartitionTableError(f"Partition {p.label!r} ends at {p.end:#x}, past the {flash_size >> 20} MB flash",
                                      "use a smaller layout or a board with more flash")
        prev_end = p.end
    out = b"".join(
        ENTRY.pack(MAGIC, p.type, p.subtype, p.offset, p.size, p.label.encode()[:16], p.flags) for p in parts
    )
    out += MD5_MAGIC + b"\xff" * 14 + hashlib.md5(out).digest()
    return out + b"\xff" * (TABLE_SIZE - len(out))


def _num(text: str) -> int:
    text = text.strip().upper()
    if text.endswith("K"):
        return int(text[:-1], 0) * 1024
    if text.endswith("M"):
        return int(text[:-1], 0) * 1024 * 1024
    return int(text, 0)


def from_csv(text: str) -> list[Partition]:
    """Read an ESP-IDF partition CSV (name, type, subtype, offset, size[, flags]); offsets required."""
    parts = []
    for row in csv.reader(io.StringIO(text)):
        if not row or row[0].strip().startswith("#"):
            continue
        name, ptype, subtype, offset, size = (c.strip() for c in row[:5])
        t = TYPES.get(ptype, None)
        if t is None:
            t = int(ptype, 0)
        st = SUBTYPES.get(t, {}).get(subtype)
        if st is None:
            try:
                st = int(subtype, 0)
            except ValueError:
                raise PartitionTableError(f"Unknown partition subtype {subtype!r}", "see ESP-IDF partition docs") from None
        parts.append(Partition(name, t, st, _num(offset), _num(size)))
    return parts


def find(parts: list[Partition], label: str | None = None, *, type: int | None = None,
         subtype: int | None = None) -> Partition | None:
    """First partition matching the label and/or type/subtype, or None."""
    for p in parts:
        if label is not None and p.label != label:
            continue
        if type is not None and p.type != type:
            continue
        if subtype is not None and p.subtype != subtype:
            continue
        return p
    return None
