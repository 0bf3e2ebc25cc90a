"""What a virtual board does at power-on: ROM banner, image checks, mounting ``vfs``.

Mirrors a real ESP32 with MicroPython: the ROM loads the 2nd-stage bootloader (bad
header -> ``invalid header: 0x...`` and a reset loop), the bootloader reads the
partition table at 0x8000 and the app image, MicroPython mounts the littlefs ``vfs``
partition (formatting it on first boot, as ``inisetup.py`` does) and runs ``main.py``.
The firmware itself runs off-board from a per-board directory holding the vfs files;
:func:`sync_back` writes changes made there back into the flash image.
"""

from __future__ import annotations

import os
import shutil
import struct
from dataclasses import dataclass, field
from pathlib import Path

from fleetdesk.boards import appimage, fsimage, partitions
from fleetdesk.virtual.flashmem import FlashMemory

ROM_BANNER = {
    "esp32": "ets Jun  8 2016 00:22:57\r\n\r\nrst:0x1 (POWERON_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)\r\n",
    "esp32s3": "ESP-ROM:esp32s3-20210327\r\nBuild:Mar 27 2021\r\nrst:0x1 (POWERON),boot:0x8 (SPI_FAST_FLASH_BOOT)\r\n",
    "esp32c3": "ESP-ROM:esp32c3-api1-20210207\r\nBuild:Feb  7 2021\r\nrst:0x1 (POWERON),boot:0xc (SPI_FAST_FLASH_BOOT)\r\n",
    "esp8266": "\r\n ets Jan  8 2013,rst cause:2, boot mode:(3,6)\r\n\r\n",
}
RESET_BANNER = {
    "esp32": "ets Jun  8 2016 00:22:57\r\n\r\nrst:0x10 (RTCWDT_RTC_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)\r\n",
    "esp32s3": "ESP-ROM:esp32s3-20210327\r\nBuild:Mar 27 2021\r\nrst:0x7 (TG0WDT_SYS_RST),boot:0x8 (SPI_FAST_FLASH_BOOT)\r\n",
    "esp32c3": "ESP-ROM:esp32c3-api1-20210207\r\nBuild:Feb  7 2021\r\nrst:0x7 (TG0WDT_SYS_RST),boot:0xc (SPI_FAST_FLASH_BOOT)\r\n",
    "esp8266": "\r\n ets Jan  8 2013,rst cause:4, boot mode:(3,6)\r\n\r\nwdt reset\r\n",
}
MICROPYTHON_BOOT_PY = b"# This file is executed on every boot (including wake-boot from deepsleep)\n"


@dataclass
class BootResult:
    """Outcome of a power-on.

    Attributes:
        ok: an app image was found and the filesystem mounted.
        log: console text printed during this boot.
        loop_log: text repeated on every reset of a boot loop (empty when ok).
        files: the vfs files (path -> bytes) as extracted to the fs dir.
        vfs: the vfs partition (None when absent).
        app_version: version string from the app descriptor, if any.
    """

    ok: bool
    log: str
    loop_log: str = ""
    files: dict[str, bytes] = field(default_factory=dict)
    vfs: partitions.Partition | None = None
    app_version: str | None = None


def _fail(chip: str, first: str, lines: str) -> BootResult:
    loop = RESET_BANNER[chip] + lines
    return BootResult(False, first + lines, loop_log=loop)


def power_on(flash: FlashMemory, chip: str, fs_dir: Path, *, first_boot_banner: bool = True,
             revision: int | None = None) -> BootResult:
    """Check the flashed images, mount ``vfs`` and extract its files to ``fs_dir``.

    Never raises for bad flash contents: they produce a boot loop result, as on a chip.
    """
    banner = ROM_BANNER[chip] if first_boot_banner else RESET_BANNER[chip]
    bl_off = appimage.BOOTLOADER_OFFSET[chip]
    head = flash.read(bl_off, 32)
    word = struct.unpack("<I", head[:4])[0]
    if head[0] != appimage.ESP_IMAGE_MAGIC:
        return _fail(chip, banner, f"invalid header: 0x{word:08x}\r\n")
    expected_id = appimage.CHIP_IDS.get(chip)
    hdr = appimage.read_header(head, chip)
    if expected_id is not None and hdr.chip_id != expected_id:
        return _fail(chip, banner,
                     f"E (38) boot_comm: mismatch chip ID, expected {expected_id}, found {hdr.chip_id}\r\n"
                     "ets_main.c 371 \r\n")
    entry = "0x400805e4" if chip == "esp32" else "0x40100000" if chip == "esp8266" else "0x403c9908"
    log = banner + f"load:0x3fff0030,len:4728\r\nentry {entry}\r\nI (29) boot: ESP-IDF v5.2 2nd stage bootloader\r\n"
    try:
        table = partitions.parse(flash.read(partitions.TABLE_OFFSET, partitions.TABLE_SIZE))
    except partitions.PartitionTableError:
        return _fail(chip, log, "E (46) flash_parts: partition 0 invalid magic number 0xffff\r\n"
                                "E (52) boot: Failed to verify partition table\r\n"
                                "E (57) boot: load partition table error!\r\n")
    for i, p in enumerate(table):
        if p.end > flash.size:
            return _fail(chip, log,
                         f"E (46) flash_parts: partition {i} invalid - offset 0x{p.offset:x} size 0x{p.size:x} "
                         f"exceeds flash chip size 0x{flash.size:x}\r\n"
                         "E (52) boot: Failed to verify partition table\r\n"
                         "E (57) boot: load partition table error!\r\n")
    log += "I (48) boot: Partition Table:\r\n"
    for i, p in enumerate(table):
        log += f"I (52) boot: {i:2d} {p.label:<16} {p.type_name:<6} {p.subtype_name:<8} {p.offset:08x} {p.size:08x}\r\n"
    app = partitions.find(table, type=partitions.TYPES["app"])
    if app is None:
        return _fail(chip, log, "E (60) boot: No bootable app partitions in the partition table\r\n")
    app_head = flash.read(app.offset, min(app.size, 32 + 256))
    if app_head[0] != appimage.ESP_IMAGE_MAGIC:
        return _fail(chip, log,
                     f"E (64) esp_image: image at 0x{app.offset:x} has invalid magic byte (nothing flashed here?)\r\n"
                     f"E (70) boot: {app.label} app partition is not bootable\r\n"
                     "E (75) boot: No bootable app partitions in the partition table\r\n")
    app_hdr = appimage.read_header(app_head, chip)
    if expected_id is not None and app_hdr.chip_id != expected_id:
        return _fail(chip, log,
                     f"E (64) esp_image: image at 0x{app.offset:x} is for chip id {app_hdr.chip_id}, expected {expected_id}\r\n"
                     f"E (70) boot: {app.label} app partition is not bootable\r\n")
    if revision is not None and app_hdr.min_revision > revision:
        need, have = app_hdr.min_revision, revision
        return _fail(chip, log,
                     f"E (64) boot_comm: Image requires chip rev >= v{need // 100}.{need % 100}, "
                     f"but chip is v{have // 100}.{have % 100}\r\n"
                     f"E (70) boot: {app.label} app partition is not bootable\r\n")
    log += f"I (80) boot: Loaded app from partition at offset 0x{app.offset:x}\r\nI (85) boot: Disabling RNG early entropy source...\r\n"
    vfs = partitions.find(table, "vfs") or partitions.find(table, type=1, subtype=0x83)
    files: dict[str, bytes] = {}
    if vfs is not None:
        try:
            files = fsimage.read_image(flash.read(vfs.offset, vfs.size))
        except fsimage.FsImageError:
            log += "Performing initial setup\r\n"  # MicroPython's inisetup formats a fresh vfs
            files = {"/boot.py": MICROPYTHON_BOOT_PY}
            flash.write(vfs.offset, fsimage.build_image(files, vfs.size))
    app_note = f" (app {app_hdr.app_version})" if app_hdr.app_version else ""
    log += f"MicroPython v1.24.1 on 2024-11-29; Fleetdesk virtual module with {chip.upper()}{app_note}\r\n"
    extract(files, fs_dir)
    return BootResult(True, log, files=files, vfs=vfs, app_version=app_hdr.app_version)


def extract(files: dict[str, bytes], fs_dir: Path) -> None:
    """Replace ``fs_dir``'s contents with ``files``, owner-only (dirs 0700, files 0600).

    The vfs holds the board's private key (certs/key.der) and config.json (PoP, Wi-Fi
    password): a board's flash is private to it, so is its unpacked copy.
    """
    if fs_dir.exists():
        shutil.rmtree(fs_dir)
    fs_dir.mkdir(parents=True, mode=0o700)
    os.chmod(fs_dir, 0o700)  # mkdir's mode is masked by the umask
    for path, data in files.items():
        target = fs_dir / path.lstrip("/")
        parent = target.parent
        missing = []
        while not parent.exists():
            missing.append(parent)
            parent = parent.parent
        for d in reversed(missing):
            d.mkdir(mode=0o700)
            os.chmod(d, 0o700)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(target, 0o600)


def snapshot(fs_dir: Path) -> dict[str, bytes]:
    """Every file under ``fs_dir`` as device path -> bytes (caches like __pycache__ skipped)."""
    out: dict[str, bytes] = {}
    if not fs_dir.is_dir():
        return out
    for root, dirs, names in os.walk(fs_dir):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for name in names:
            full = Path(root) / name
            out["/" + full.relative_to(fs_dir).as_posix()] = full.read_bytes()
    return out


def sync_back(flash: FlashMemory, result: BootResult, fs_dir: Path) -> bool:
    """Write files the firmware changed in ``fs_dir`` back into the flash's vfs partition.

    Returns True when the flash changed. Unchanged files leave the image byte-identical.
    """
    if not result.ok or result.vfs is None:
        return False
    now = snapshot(fs_dir)
    changed = {p: d for p, d in now.items() if result.files.get(p) != d}
    removed = [p for p in result.files if p not in now]
    if not changed and not removed:
        return False
    vfs = result.vfs
    image = fsimage.add_files(flash.read(vfs.offset, vfs.size), changed, removed)
    flash.write(vfs.offset, image)
    result.files = now
    return True
