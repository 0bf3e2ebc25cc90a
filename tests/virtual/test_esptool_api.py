"""esptool's Python API (esptool.cmds) against a virtual board, in-process."""

from __future__ import annotations

import os
import time

import pytest


def test_api_detect_stub_write_read_erase(make_board):
    from esptool.cmds import attach_flash, detect_chip, erase_flash, read_flash, run_stub, verify_flash, write_flash
    from esptool.util import FatalError

    board = make_board("esp32")
    data = os.urandom(30000)
    with detect_chip(board.url) as esp:
        assert esp.CHIP_NAME == "ESP32"
        assert esp.read_mac() == tuple(board.spec.mac_bytes)
        assert esp.get_chip_revision() == 300
        esp = run_stub(esp)
        assert esp.IS_STUB
        attach_flash(esp)
        assert esp.flash_id() == board.flash.jedec_id
        esp.change_baud(921600)
        assert board.rom.baud == 921600
        write_flash(esp, [(0x30000, data)])
        assert read_flash(esp, 0x30000, len(data)) == data
        verify_flash(esp, [(0x30000, data)])
        erase_flash(esp)
        with pytest.raises(FatalError):
            verify_flash(esp, [(0x30000, data)])
    assert board.flash.read(0x30000, 4096) == b"\xff" * 4096


def test_api_rom_without_stub(make_board):
    from esptool.cmds import attach_flash, detect_chip, write_flash

    board = make_board("esp32c3")
    data = os.urandom(5000)
    with detect_chip(board.url) as esp:
        assert esp.CHIP_NAME == "ESP32-C3"
        assert not esp.IS_STUB
        attach_flash(esp)
        write_flash(esp, [(0x9000, data)])
        assert esp.flash_md5sum(0x9000, len(data)) == __import__("hashlib").md5(data).hexdigest()
    assert board.flash.read(0x9000, len(data)) == data


def test_stub_left_running_is_found_again(make_board):
    """A connection that starts with stub commands (no SYNC) finds the stub still running.

    (esptool's connect() always syncs on socket://, so talk to the stub class directly,
    as a tool resuming after ``--after no-reset-stub`` does.)
    """
    from esptool.cmds import detect_chip, run_stub
    from esptool.targets import CHIP_DEFS

    board = make_board("esp32")
    with detect_chip(board.url) as esp:
        run_stub(esp)
    assert board.rom.stub
    rom = CHIP_DEFS["esp32"](board.url)
    try:
        stub = rom.STUB_CLASS(rom)
        assert stub.read_reg(0x40001000) == 0x00F01D83  # answered with stub (2-byte) status
        assert stub.flash_md5sum(0, 16) == __import__("hashlib").md5(b"\xff" * 16).hexdigest()
    finally:
        rom._port.close()
    # a new connection starting with SYNC is a reset into the ROM: the stub is gone
    with detect_chip(board.url) as esp:
        assert not esp.sync_stub_detected
    assert not board.rom.stub


def test_esp32_efuses_report_security_and_revision(make_board):
    from esptool.cmds import detect_chip

    board = make_board("esp32", secure_boot=True, flash_encryption=True, revision=101)
    with detect_chip(board.url) as esp:
        assert esp.get_secure_boot_enabled()
        assert esp.get_flash_encryption_enabled()
        assert esp.get_chip_revision() == 101
    plain = make_board("esp32")
    with detect_chip(plain.url) as esp:
        assert not esp.get_secure_boot_enabled()
        assert not esp.get_flash_encryption_enabled()


def test_after_no_reset_stays_in_bootloader(make_board, tmp_path, run_esptool):
    board = make_board("esp32")
    image = tmp_path / "x.bin"
    image.write_bytes(b"\x42" * 4096)
    run_esptool(board.url, "--after", "no-reset", "write-flash", "0x10000", str(image))
    assert board.state == "bootloader"  # the stub handed back to the ROM; nothing booted (esptool has exited)
    run_esptool(board.url, "write-flash", "0x11000", str(image))  # default --after hard-reset
    end = time.monotonic() + 5
    while board.state == "bootloader" and time.monotonic() < end:
        time.sleep(0.05)
    assert board.state == "bootloop"  # booted: nothing valid flashed at 0x1000
