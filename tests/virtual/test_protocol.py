"""ROM/stub protocol details the real esptool relies on, checked on the wire."""

from __future__ import annotations

import struct
import time

from fleetdesk.virtual import rom as R
from fleetdesk.virtual.flashmem import FlashMemory
from fleetdesk.virtual.spec import BoardSpec


def _sync(link):
    link.send(R.SYNC, R.SYNC_PAYLOAD)
    replies = [link.recv_packet() for _ in range(8)]
    return replies


def test_sync_answered_eight_times_with_rom_value(make_board, raw_link):
    board = make_board("esp32")
    link = raw_link(board.port)
    replies = _sync(link)
    for reply in replies:
        direction, op, size, value = struct.unpack("<BBHI", reply[:8])
        assert (direction, op, value) == (1, R.SYNC, R.ROM_SYNC_VALUE)
        assert reply[8:] == b"\x00\x00\x00\x00"  # ESP32 ROM: 4 status bytes


def test_unknown_command_gets_rom_error(make_board, raw_link):
    board = make_board("esp32")
    link = raw_link(board.port)
    _sync(link)
    link.send(0x55, b"\x00" * 4)
    reply = link.recv_packet()
    assert reply[1] == 0x55
    assert reply[8:10] == bytes([1, R.ROM_INVALID_MESSAGE])
    # stub-only commands are unknown to the ROM too
    link.send(R.ERASE_FLASH)
    assert link.recv_packet()[8:10] == bytes([1, R.ROM_INVALID_MESSAGE])
    # and the board still answers afterwards
    link.send(R.READ_REG, struct.pack("<I", 0x40001000))
    assert struct.unpack("<I", link.recv_packet()[4:8])[0] == 0x00F01D83


def test_stub_status_and_errors(tmp_path):
    loader = R.Bootloader(BoardSpec(chip="esp8266", throttle=False), FlashMemory(tmp_path / "f", 1 << 20))
    req = lambda op, data=b"", chk=0: struct.pack("<BBHI", 0, op, len(data), chk) + data  # noqa: E731
    rom_reply = list(loader.handle(req(R.SPI_FLASH_MD5, bytes(16))))[0]
    assert rom_reply[8:10] == bytes([1, R.ROM_INVALID_MESSAGE]) and len(rom_reply) == 10  # ESP8266 ROM: 2 bytes
    stub_entry = max(R.stub_entries("esp8266"))  # the flasher stub esptool uploads
    out = list(loader.handle(req(R.MEM_END, struct.pack("<II", 0, stub_entry))))
    assert out[-1] == b"OHAI" and loader.stub
    md5 = list(loader.handle(req(R.SPI_FLASH_MD5, struct.pack("<IIII", 0, 16, 0, 0))))[0]
    assert md5[8:24] == __import__("hashlib").md5(b"\xff" * 16).digest() and md5[24:26] == b"\0\0"
    bad = list(loader.handle(req(0x77)))[0]
    assert bad[8:10] == bytes([1, R.STUB_NOT_IMPLEMENTED])
    # a FLASH_DATA block with a wrong checksum is refused, the flash untouched
    list(loader.handle(req(R.FLASH_BEGIN, struct.pack("<IIII", 4096, 1, 4096, 0))))
    block = b"\x12" * 4096
    reply = list(loader.handle(req(R.FLASH_DATA, struct.pack("<IIII", 4096, 0, 0, 0) + block, chk=0)))[0]
    assert reply[8:10] == bytes([1, R.STUB_BAD_CHECKSUM])
    assert loader.flash.read(0, 4) == b"\xff" * 4
    # past the end of a 1 MB flash
    reply = list(loader.handle(req(R.ERASE_REGION, struct.pack("<II", 0xFF000, 0x2000))))[0]
    assert reply[8] == 1


def test_line_rate_is_paced(make_board, raw_link):
    board = make_board("esp32", throttle=True)
    link = raw_link(board.port)
    _sync(link)
    link.send(R.MEM_BEGIN, struct.pack("<IIII", 5 * 0x1000, 5, 0x1000, 0x3FFB0000))
    link.recv_packet()
    start = time.monotonic()
    for seq in range(5):  # 5 x 4 KB at 115200 baud (11.52 KB/s) take >= 1.78 s
        block = bytes([seq]) * 0x1000
        link.send(R.MEM_DATA, struct.pack("<IIII", len(block), seq, 0, 0) + block, R.checksum(block))
        assert link.recv_packet()[8] == 0
    assert time.monotonic() - start >= 1.7
    link.send(R.CHANGE_BAUDRATE, struct.pack("<II", 921600, 0))
    link.recv_packet()  # the reply goes out at the old rate, then the line switches
    end = time.monotonic() + 5
    while board.rom.baud != 921600 and time.monotonic() < end:
        time.sleep(0.01)
    assert board.rom.baud == 921600
