"""Boot after flashing: console on a terminal connection, boot loops, fs sync back."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from fleetdesk.boards import appimage, bundle, fsimage
from fleetdesk.boards.partitions import TABLE_OFFSET


def _flash_args(b: bundle.Bundle, out_dir) -> list[str]:
    args = []
    for p in b.parts:
        args += [hex(p.offset), str(out_dir / f"{p.name}.bin")]
    return args


def _wait_state(board, state: str, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while board.state != state and time.monotonic() < end:
        time.sleep(0.05)
    assert board.state == state, f"board stayed {board.state!r}, console:\n{board.console_text[-2000:]}"


def _wait_console(board, needle: str, timeout: float = 10.0) -> None:
    """Wait until the board's console shows ``needle`` (fails with the console's tail)."""
    end = time.monotonic() + timeout
    while needle not in board.console_text and time.monotonic() < end:
        time.sleep(0.02)
    assert needle in board.console_text, f"console never showed {needle!r}:\n{board.console_text[-2000:]}"


@pytest.mark.slow
def test_cli_bundle_flashes_and_boots_with_console(make_board, tmp_path, run_esptool, raw_link):
    out = tmp_path / "bundle"
    subprocess.run([sys.executable, "-m", "fleetdesk", "firmware", "build", "-o", str(out)],
                   check=True, capture_output=True, timeout=60)
    built = bundle.load_bundle(out)
    board = make_board("esp32")
    _wait_console(board, "invalid header: 0xffffffff")  # erased flash
    assert board.state == "bootloop"
    run_esptool(board.url, "write-flash", *_flash_args(built, out))
    _wait_state(board, "running")
    term = raw_link(board.port)  # a serial terminal: sends nothing, sees the console
    text = term.read_text(b"MicroPython")
    assert b"rst:0x1 (POWERON_RESET)" in text
    assert b"Loaded app from partition at offset 0x10000" in text
    assert b"MicroPython v1.24.1" in text and f"(app {built.version})".encode() in text
    assert sorted(p.name for p in (board.fs_dir / "fd").iterdir())  # vfs extracted for the firmware
    # the next esptool session (SYNC) stops the firmware and resets into the ROM
    run_esptool(board.url, "chip-id")
    _wait_state(board, "running")
    assert board.boots >= 3


@pytest.mark.slow
def test_firmware_fs_changes_survive_in_flash(make_board, tmp_path, run_esptool, raw_link):
    root = tmp_path / "fw"
    (root / "fd").mkdir(parents=True)
    (root / "main.py").write_text(
        "f = open('settings.json', 'w')\nf.write('{\"refresh\": 5000}')\nf.close()\nprint('saved settings')\n"
        "import time\nwhile True:\n    time.sleep(1)\n"
    )
    built = bundle.build_bundle(tmp_path / "bundle", chip="esp32", firmware_root=root)
    board = make_board("esp32")
    run_esptool(board.url, "write-flash", *_flash_args(built, tmp_path / "bundle"))
    term = raw_link(board.port)
    assert b"saved settings" in term.read_text(b"saved settings", timeout=20)
    run_esptool(board.url, "chip-id")  # SYNC: firmware stopped, fs synced into flash
    files = fsimage.read_image(board.flash.read(built.vfs_offset, built.vfs_size))
    assert files["/settings.json"] == b'{"refresh": 5000}'
    assert files["/main.py"] == (root / "main.py").read_bytes()


def test_empty_flash_boot_loops(make_board, raw_link):
    board = make_board("esp32")
    term = raw_link(board.port)
    text = term.read_text(b"XXX-never", timeout=2.6)
    assert text.count(b"invalid header: 0xffffffff") >= 2
    assert board.state == "bootloop"


def test_corrupt_or_wrong_chip_images_boot_loop(host, make_board, tmp_path, raw_link):
    built = bundle.build_bundle(tmp_path / "b", chip="esp32")
    board = make_board("esp32", power_on=False)
    for p in built.parts:
        board.flash.erase_sectors(p.offset, p.size)
        board.flash.write(p.offset, p.data)
    # an app image for another chip in the app slot
    board.flash.erase_sectors(0x10000, 0x1000)
    board.flash.write(0x10000, appimage.build_image("esp32s3", b"\0" * 64))
    host.reset(board)
    _wait_console(board, "is for chip id 9, expected 0")
    assert board.state == "bootloop"
    # garbage where the app should be
    board.flash.write(0x10000, b"\x00" * 64)
    host.reset(board)
    _wait_console(board, "has invalid magic byte")
    # a partition table for more flash than the chip has
    small = make_board("esp32", power_on=False, flash_mb=2)
    for p in built.parts[:3]:
        small.flash.erase_sectors(p.offset, p.size)
        small.flash.write(p.offset, p.data)
    host.reset(small)
    _wait_console(small, "exceeds flash chip size 0x200000")
    assert small.state == "bootloop"
    # a corrupt partition table
    board.flash.write(TABLE_OFFSET + 40, b"\x00\x00")
    host.reset(board)
    _wait_console(board, "Failed to verify partition table")
    assert board.state == "bootloop"


def test_erased_vfs_is_formatted_like_micropython(host, make_board, tmp_path):
    built = bundle.build_bundle(tmp_path / "b", chip="esp32")
    board = make_board("esp32", power_on=False)
    for p in built.parts:
        if p.name != "vfs":
            board.flash.erase_sectors(p.offset, p.size)
            board.flash.write(p.offset, p.data)
    host.reset(board)
    end = time.monotonic() + 10
    while board.state != "idle" and time.monotonic() < end:
        time.sleep(0.05)
    assert board.state == "idle", board.console_text
    assert "Performing initial setup" in board.console_text
    assert board.console_text.endswith(">>> ")
    assert fsimage.read_image(board.flash.read(built.vfs_offset, built.vfs_size)) == {"/boot.py": b"# This file is executed on every boot (including wake-boot from deepsleep)\n"}


def test_min_revision_refused_by_esptool_and_bootloader(host, make_board, tmp_path, run_esptool):
    out = tmp_path / "b"
    subprocess.run([sys.executable, "-m", "fleetdesk", "firmware", "build", "--min-revision", "3.0", "-o", str(out)],
                   check=True, capture_output=True, timeout=60)
    built = bundle.load_bundle(out)
    assert built.min_chip_revision == 300 and built.flash_size == "4MB"
    old = make_board("esp32", revision=100)
    bad = run_esptool(old.url, "write-flash", *_flash_args(built, out), check=False)
    assert bad.returncode != 0 and "requires chip revision" in bad.stdout + bad.stderr
    # forced onto the chip anyway, the 2nd-stage bootloader refuses the app: boot loop
    run_esptool(old.url, "write-flash", "--force", *_flash_args(built, out))
    end = time.monotonic() + 10
    while "Image requires chip rev >= v3.0, but chip is v1.0" not in old.console_text and time.monotonic() < end:
        time.sleep(0.05)
    assert "Image requires chip rev >= v3.0, but chip is v1.0" in old.console_text
    assert old.state == "bootloop"
