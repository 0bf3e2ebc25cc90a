"""esptool commands a user can run, answered as a stock chip answers them (issue 16 §3).

Each test drives the real esptool (CLI in a subprocess, or its API in-process where a
command needs one session) against a virtual board and checks what the user would see.
"""

from __future__ import annotations

import os
import re
import struct

import pytest


def _sfdp(esptool, url: str, address: int, *extra: str) -> bytes:
    out = esptool(url, *extra, "read-flash-sfdp", str(address), "4").stdout
    m = re.search(r"SFDP\[\d+\.\.\d+\]: ((?:0x[0-9a-f]{2} ?){4})", out)
    assert m, out
    return bytes(int(x, 16) for x in m.group(1).split())


def _status(esptool, url: str, *args: str) -> str:
    out = esptool(url, *args).stdout
    return re.findall(r"(?:Flash memory status|After flash memory status): *(0x[0-9a-f]+)", out)[-1]


@pytest.mark.parametrize("stub", [True, False], ids=["stub", "rom"])
def test_uncompressed_write_keeps_the_neighbouring_region(make_board, tmp_path, run_esptool, stub):
    """--no-compress pads its last block with 0xFF: on NOR flash that padding changes nothing,
    so a region written earlier right after the image (same padded block) stays intact."""
    board = make_board("esp32")
    opts = () if stub else ("--no-stub",)
    neighbour, image = tmp_path / "n.bin", tmp_path / "a.bin"
    neighbour.write_bytes(os.urandom(780))
    image.write_bytes(os.urandom(5000))  # ends inside 0x11000-0x11fff; the padded block reaches 0x13000+
    run_esptool(board.url, *opts, "write-flash", "0x12000", str(neighbour))
    run_esptool(board.url, *opts, "write-flash", "--no-compress", "0x10000", str(image))
    assert board.flash.read(0x12000, 780) == neighbour.read_bytes()
    assert board.flash.read(0x10000, 5000) == image.read_bytes()
    if stub:
        run_esptool(board.url, "verify-flash", "0x12000", str(neighbour), "0x10000", str(image))


@pytest.mark.parametrize("stub", [True, False], ids=["stub", "rom"])
def test_uncompressed_write_into_the_last_sector(make_board, tmp_path, run_esptool, stub):
    board = make_board("esp32", flash_mb=2)
    opts = () if stub else ("--no-stub",)
    tail = tmp_path / "tail.bin"
    tail.write_bytes(os.urandom(0x1000 - 16))
    end = board.flash.size - 0x1000
    run_esptool(board.url, *opts, "write-flash", "--no-compress", hex(end), str(tail))
    assert board.flash.read(end, len(tail.read_bytes())) == tail.read_bytes()
    back = tmp_path / "back.bin"
    run_esptool(board.url, "read-flash", hex(end), "0x1000", str(back))
    assert back.read_bytes()[: len(tail.read_bytes())] == tail.read_bytes()
    assert back.read_bytes()[-16:] == b"\xff" * 16


def test_esp8266_rom_write_lands_with_its_erase_quirk(make_board, tmp_path, run_esptool):
    """The ESP8266 ROM erases more than FLASH_BEGIN asks (esptool asks less to make up for
    it); a ROM write must still land whole, and nothing past its sectors is erased."""
    board = make_board("esp8266", flash_mb=1)
    keep = os.urandom(64)
    board.flash.erase_sectors(0x30000, 0x1000)
    board.flash.program(0x30000, keep)
    image = tmp_path / "a.bin"
    image.write_bytes(os.urandom(0x7000 + 123))  # 8 sectors from 0x23000: crosses a 64 KB block
    run_esptool(board.url, "--no-stub", "write-flash", "0x23000", str(image))
    assert board.flash.read(0x23000, len(image.read_bytes())) == image.read_bytes()
    assert board.flash.read(0x30000, 64) == keep


@pytest.mark.parametrize("flash_mb", [4, 8])
def test_read_flash_sfdp_answers_the_signature_and_a_parameter_table(make_board, run_esptool, flash_mb):
    board = make_board("esp32", flash_mb=flash_mb)
    assert _sfdp(run_esptool, board.url, 0) == b"SFDP"
    assert _sfdp(run_esptool, board.url, 0, "--no-stub") == b"SFDP"
    header = _sfdp(run_esptool, board.url, 4) + _sfdp(run_esptool, board.url, 8) + _sfdp(run_esptool, board.url, 12)
    assert header[:2] == b"\x06\x01"  # SFDP revision 1.6
    assert header[4] == 0 and header[6] == 1  # parameter header 0: the JEDEC Basic Flash Parameter Table
    table = int.from_bytes(header[8:11], "little")  # its parameter table pointer
    density = struct.unpack("<I", _sfdp(run_esptool, board.url, table + 4))[0]
    assert density == (flash_mb << 20) * 8 - 1  # the same size as the JEDEC id tells
    erase = _sfdp(run_esptool, board.url, table)
    assert erase[0] & 3 == 1 and erase[1] == 0x20  # 4 KB erase with opcode 0x20


def test_flash_id_before_and_after_spi_attach(make_board, run_esptool):
    """A real ESP32 ROM has not attached its flash in download mode: the id reads as nothing
    until SPI_ATTACH (esptool's flash-id attaches first; so does the station's probe)."""
    from esptool.cmds import attach_flash, detect_chip, detect_flash_size

    board = make_board("esp32")
    with detect_chip(board.url) as esp:
        assert not esp.IS_STUB
        assert esp.flash_id(cache=False) == 0xFFFFFF
        assert detect_flash_size(esp) is None
        attach_flash(esp)
        assert esp.flash_id(cache=False) == board.flash.jedec_id
    out = run_esptool(board.url, "--no-stub", "flash-id").stdout
    assert "Manufacturer: ef" in out and "Detected flash size: 4MB" in out


def test_flash_status_register_written_and_read_back(host, make_board, run_esptool):
    board = make_board("esp32")
    assert _status(run_esptool, board.url, "read-flash-status") == "0x0000"
    # volatile write (WEVSR): read back at once, gone after a power cycle
    assert _status(run_esptool, board.url, "write-flash-status", "--bytes", "2", "0x0200") == "0x0200"
    assert _status(run_esptool, board.url, "read-flash-status") == "0x0200"
    host.unplug(board)
    host.replug(board)
    assert _status(run_esptool, board.url, "read-flash-status") == "0x0000"
    # non-volatile (WREN) survives the power cycle
    run_esptool(board.url, "write-flash-status", "--non-volatile", "--bytes", "2", "0x0200")
    host.unplug(board)
    host.replug(board)
    assert _status(run_esptool, board.url, "read-flash-status") == "0x0200"
    assert _status(run_esptool, board.url, "read-flash-status", "--bytes", "3") == "0x600200"


def test_memory_reads_and_load_ram(make_board, tmp_path):
    """write-mem/read-mem/dump-mem see RAM as the loader left it; load-ram of code that is
    not the flasher stub starts it, and the ROM loader answers no more until a reset."""
    from esptool.bin_image import ESP32FirmwareImage, ImageSegment
    from esptool.cmds import detect_chip, dump_mem, load_ram
    from esptool.util import FatalError

    board = make_board("esp32")
    payload = os.urandom(64)
    image = ESP32FirmwareImage()
    image.entrypoint = 0x40080404
    segment = ImageSegment(0x3FFB0000, payload)
    segment.name = ".dram0.data"  # what elf2image names it
    image.segments = [segment]
    path = tmp_path / "ram.bin"
    image.save(str(path))
    with detect_chip(board.url) as esp:
        esp.write_reg(0x3FFB1000, 0x12345678)
        assert esp.read_reg(0x3FFB1000) == 0x12345678
        esp.mem_begin(len(payload), 1, esp.ESP_RAM_BLOCK, 0x3FFB2000)
        esp.mem_block(payload, 0)
        assert dump_mem(esp, 0x3FFB2000, len(payload)) == payload
        load_ram(esp, str(path))
        with pytest.raises(FatalError):
            esp.read_reg(0x3FFB0000, timeout=0.5)
