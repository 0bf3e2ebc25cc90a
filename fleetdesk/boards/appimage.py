"""ESP app image headers: build the placeholder images a bundle carries, check flashed ones.

A bundle built without a MicroPython base image carries small but valid ESP images
(magic 0xE9, correct chip id in the extended header, checksum, SHA-256) in the
bootloader and app slots, so virtual boards accept them. Building uses esptool's own
``bin_image`` classes.
"""

from __future__ import annotations

import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

from fleetdesk.errors import BoardError

ESP_IMAGE_MAGIC = 0xE9
APP_DESC_MAGIC = 0xABCD5432
BOOTLOADER_OFFSET = {"esp32": 0x1000, "esp32s3": 0x0, "esp32c3": 0x0, "esp8266": 0x0}
CHIP_IDS = {"esp32": 0, "esp32s3": 9, "esp32c3": 5}


def app_descriptor(project: str, version: str) -> bytes:
    """An ``esp_app_desc_t`` (256 bytes) naming project and version, as ESP-IDF apps start with."""
    return struct.pack(
        "<IIII32s32s16s16s32s32s",  # magic, secure_ver, reserv1[2], version, project, time, date, idf, sha
        APP_DESC_MAGIC, 0, 0, 0, version.encode()[:31], project.encode()[:31], b"00:00:00", b"Jan  1 2026",
        b"fleetdesk-virtual", b"",
    ).ljust(256, b"\x00")


def build_image(chip: str, payload: bytes, *, entry: int = 0x40080000, load_addr: int = 0x3F400020,
                min_revision: int = 0) -> bytes:
    """A valid single-segment ESP image for ``chip`` holding ``payload``.

    ``min_revision`` (major*100+minor) goes into the extended header's min_chip_rev_full,
    which esptool and the 2nd-stage bootloader check against the chip.
    """
    if chip == "esp8266":
        body = bytes([ESP_IMAGE_MAGIC, 1, 0, 0x40]) + struct.pack("<I", 0x40100000)
        data = payload + b"\x00" * (-len(payload) % 4)
        body += struct.pack("<II", 0x3FFE8000, len(data)) + data
        chk = 0xEF
        for b in data:
            chk ^= b
        body += b"\x00" * (15 - len(body) % 16) + bytes([chk])
        return body
    from esptool import bin_image
    from esptool.targets import CHIP_DEFS

    try:
        img = CHIP_DEFS[chip].BOOTLOADER_IMAGE()
    except KeyError:
        raise BoardError(f"Unknown chip {chip!r}", "use esp32, esp32s3, esp32c3 or esp8266") from None
    img.entrypoint = entry
    seg = bin_image.ImageSegment(load_addr, payload)
    seg.name = ".flash.appdesc"
    img.segments = [seg]
    img.flash_size_freq = 0x20  # 4MB, 40 MHz
    if min_revision:
        img.min_rev_full = min_revision
        img.max_rev_full = 65535
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "image.bin"
        img.save(str(path))
        return path.read_bytes()


@dataclass(frozen=True)
class ImageHeader:
    """What a boot ROM/bootloader reads from an image's first bytes."""

    magic: int
    segments: int
    entry: int
    chip_id: int | None
    app_version: str | None
    project: str | None
    min_revision: int = 0


def read_header(data: bytes, chip: str) -> ImageHeader:
    """Parse the header of an image starting at ``data[0]`` (no validation)."""
    magic, segs, _mode, _sf, entry = struct.unpack("<BBBBI", data[:8])
    chip_id = None
    version = project = None
    min_rev = 0
    if chip != "esp8266" and len(data) >= 24:
        chip_id = struct.unpack("<H", data[12:14])[0]
        min_rev_full, max_rev_full = struct.unpack("<HH", data[15:19])
        min_rev = min_rev_full if max_rev_full else 0
        # first segment header at 24, then data; app descriptor sits at its start
        if len(data) >= 32 + 256:
            desc = data[32 : 32 + 256]
            if struct.unpack("<I", desc[:4])[0] == APP_DESC_MAGIC:
                version = desc[16:48].split(b"\x00")[0].decode(errors="replace")
                project = desc[48:80].split(b"\x00")[0].decode(errors="replace")
    return ImageHeader(magic, segs, entry, chip_id, version, project, min_rev)
