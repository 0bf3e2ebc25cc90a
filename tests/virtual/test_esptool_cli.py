"""The real esptool CLI (subprocess) against virtual boards over socket://."""

from __future__ import annotations

import os

import pytest



def test_esp32_full_cycle(make_board, tmp_path, run_esptool):
    esptool = run_esptool
    board = make_board("esp32")
    out = esptool(board.url, "flash-id").stdout
    assert "Detecting chip type... ESP32" in out
    assert "revision v3.0" in out
    assert f"MAC:                {board.spec.mac}" in out
    assert "Detected flash size: 4MB" in out

    image = tmp_path / "app.bin"
    image.write_bytes(os.urandom(64 * 1024) + bytes(64 * 1024))
    data = image.read_bytes()
    # compressed via the stub, then uncompressed, then the ROM without stub (both ways)
    out = esptool(board.url, "write-flash", "0x10000", str(image)).stdout
    assert "Hash of data verified" in out
    esptool(board.url, "write-flash", "--no-compress", "0x40000", str(image))
    esptool(board.url, "--no-stub", "write-flash", "0x80000", str(image))
    esptool(board.url, "--no-stub", "write-flash", "--no-compress", "0xC0000", str(image))
    for offset in (0x10000, 0x40000, 0x80000, 0xC0000):
        assert board.flash.read(offset, len(data)) == data
    out = esptool(board.url, "verify-flash", "0x10000", str(image)).stdout
    assert "verification successful" in out.lower() or "verified" in out.lower()

    back = tmp_path / "back.bin"
    esptool(board.url, "read-flash", "0x40000", "0x3000", str(back))
    assert back.read_bytes() == data[:0x3000]
    esptool(board.url, "--no-stub", "read-flash", "0x80000", "0x200", str(back))
    assert back.read_bytes() == data[:0x200]

    esptool(board.url, "erase-region", "0x10000", "0x1000")
    assert board.flash.read(0x10000, 0x1000) == b"\xff" * 0x1000
    assert board.flash.read(0x11000, 16) == data[0x1000:0x1010]
    esptool(board.url, "erase-flash")
    assert board.flash.read(0x40000, 0x1000) == b"\xff" * 0x1000
    bad = esptool(board.url, "verify-flash", "0x10000", str(image), check=False)
    assert bad.returncode != 0


def test_flash_persists_across_board_restart(host, tmp_path, run_esptool):
    esptool = run_esptool
    from fleetdesk.virtual.spec import BoardSpec

    image = tmp_path / "x.bin"
    image.write_bytes(os.urandom(8192))
    spec = BoardSpec(name="keep", throttle=False)
    board = host.start_board(spec, tmp_path / "state")
    esptool(board.url, "write-flash", "0x20000", str(image))
    host.call(board.close())
    host.boards.remove(board)
    again = host.start_board(BoardSpec(name="keep", throttle=False), tmp_path / "state")
    esptool(again.url, "verify-flash", "0x20000", str(image))


@pytest.mark.parametrize("chip, name", [("esp32s3", "ESP32-S3"), ("esp32c3", "ESP32-C3"), ("esp8266", "ESP8266")])
def test_other_chips_detect_write_verify(make_board, tmp_path, chip, name, run_esptool):
    esptool = run_esptool
    board = make_board(chip)
    image = tmp_path / "app.bin"
    image.write_bytes(os.urandom(20000))
    out = esptool(board.url, "write-flash", "0x10000", str(image)).stdout
    assert f"Detecting chip type... {name}" in out
    assert board.spec.mac in out
    assert board.flash.read(0x10000, 20000) == image.read_bytes()
    esptool(board.url, "verify-flash", "0x10000", str(image))


def test_security_flags_reported(make_board, run_esptool):
    esptool = run_esptool
    s3 = make_board("esp32s3", secure_boot=True, flash_encryption=True, revision=2)
    out = esptool(s3.url, "get-security-info").stdout
    assert "Secure Boot: Enabled" in out
    assert "Flash Encryption: Enabled" in out
    assert "revision v0.2" in out


def test_flash_size_and_out_of_range(make_board, tmp_path, run_esptool):
    esptool = run_esptool
    board = make_board("esp32", flash_mb=2)
    assert "Detected flash size: 2MB" in esptool(board.url, "flash-id").stdout
    image = tmp_path / "big.bin"
    image.write_bytes(b"\x01" * 8192)
    bad = esptool(board.url, "write-flash", "0x1FF000", str(image), check=False)
    assert bad.returncode != 0
    assert "2MB" in bad.stdout + bad.stderr or "flash size" in (bad.stdout + bad.stderr).lower()
