"""The ESP serial bootloader (ROM) and flasher stub, as a pure protocol state machine.

``Bootloader.handle(packet)`` takes one decoded SLIP packet and yields what the chip
sends back: response packets (bytes) and a few :class:`Action` markers for the
transport (change the line rate after this reply, reboot into the app). No I/O here,
so the same machine serves a TCP board, a test or a benchmark.

Protocol facts (esptool 5.x ``loader.py``): request ``<BBHI`` (0, op, len, checksum) +
data; reply ``<BBHI`` (1, op, len, value) + data + status bytes (ESP32-family ROM 4,
ESP8266 ROM and every stub 2). SYNC is answered 8 times (ROM value non-zero, stub 0);
after the stub upload the chip sends ``OHAI``; ROM MD5 = 32 hex chars, stub = 16 bytes.

Flash as the chip has it: after a reset the ROM has not attached the SPI flash (esptool
sends SPI_ATTACH; the ESP8266 ROM attaches on FLASH_BEGIN; the stub attaches when it
starts), so a flash id read before that finds nothing on the bus. Writes program NOR
flash (bits only clear, :meth:`FlashMemory.program`) into sectors FLASH_BEGIN erased; the
ESP8266 ROM erases more than asked (its SPIEraseArea bug, which esptool's
``get_erase_size`` compensates for). RAM written by MEM_DATA or WRITE_REG reads back with
READ_REG; code that is not esptool's flasher stub starts running and the loader is gone
until the next reset.
"""

from __future__ import annotations

import functools
import hashlib
import json
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

from fleetdesk.virtual.chips import efuse_registers, security_info
from fleetdesk.virtual.flashmem import FlashMemory, FlashRangeError
from fleetdesk.virtual.spec import BoardSpec
from fleetdesk.virtual.spiflash import SPI_CMD_USR, spi_user_command

# opcodes
FLASH_BEGIN, FLASH_DATA, FLASH_END = 0x02, 0x03, 0x04
MEM_BEGIN, MEM_END, MEM_DATA = 0x05, 0x06, 0x07
SYNC, WRITE_REG, READ_REG = 0x08, 0x09, 0x0A
SPI_SET_PARAMS, SPI_ATTACH, READ_FLASH_SLOW, CHANGE_BAUDRATE = 0x0B, 0x0D, 0x0E, 0x0F
FLASH_DEFL_BEGIN, FLASH_DEFL_DATA, FLASH_DEFL_END, SPI_FLASH_MD5 = 0x10, 0x11, 0x12, 0x13
GET_SECURITY_INFO = 0x14
ERASE_FLASH, ERASE_REGION, READ_FLASH, RUN_USER_CODE = 0xD0, 0xD1, 0xD2, 0xD3

# error codes (esptool FatalError.WithResult tables)
ROM_INVALID_MESSAGE = 0x05
ROM_FAILED_TO_ACT = 0x06
ROM_BAD_CRC = 0x07
ROM_DEFLATE_ERROR = 0x0B
STUB_BAD_DATA_LEN = 0xC0
STUB_BAD_CHECKSUM = 0xC1
STUB_INFLATE_ERROR = 0xC7
STUB_NOT_IMPLEMENTED = 0xFF

SYNC_PAYLOAD = b"\x07\x07\x12\x20" + 32 * b"\x55"
ROM_SYNC_VALUE = 0x20120707
S3_ROM_READ_FN_PTR = 0x3FCEF688  # rom_spiflash_legacy_funcs.read (esptool run_stub, secure boot)
ROM_ONLY_OPS = {READ_FLASH_SLOW}
STUB_ONLY_OPS = {ERASE_FLASH, ERASE_REGION, READ_FLASH, RUN_USER_CODE}
ESP8266_ROM_OPS = {FLASH_BEGIN, FLASH_DATA, FLASH_END, MEM_BEGIN, MEM_END, MEM_DATA, SYNC, WRITE_REG, READ_REG}


@dataclass(frozen=True)
class Action:
    """A side effect the transport performs after sending the packets before it.

    kind: "baud" (value = new line rate), "boot" (leave the bootloader, run the app).
    """

    kind: str
    value: int = 0


class ProtocolError(Exception):
    """A command failed; carries the status error code the chip reports."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


@functools.lru_cache(maxsize=None)
def stub_entries(chip: str) -> frozenset[int]:
    """Entry points of the flasher stubs esptool uploads to `chip` (its stub JSON files)."""
    from pathlib import Path

    from esptool.loader import StubFlasher

    entries = set()
    for path in Path(StubFlasher.STUB_DIR).glob(f"*/{chip}.json"):
        entries.add(json.loads(path.read_text())["entry"])
    return frozenset(entries)


def esp8266_rom_erase(offset: int, size: int) -> tuple[int, int]:
    """(start, length) the ESP8266 ROM's SPIEraseArea really erases for FLASH_BEGIN(size).

    It erases the sectors up to the next 64 KB block, then ``size`` more: the bug
    esptool's ``ESP8266ROM.get_erase_size`` asks a smaller size to make up for.
    """
    sectors = -(-size // 0x1000)
    start = offset // 0x1000
    head = min(16 - start % 16, sectors)
    return start * 0x1000, (head + sectors) * 0x1000


def checksum(data: bytes, state: int = 0xEF) -> int:
    """The bootloader's XOR checksum of a data block (0xEF seed)."""
    if len(data) >= 64:
        import numpy as np

        return state ^ int(np.bitwise_xor.reduce(np.frombuffer(data, dtype=np.uint8)))
    for b in data:
        state ^= b
    return state


class Bootloader:
    """ROM + stub of one board. Keeps registers, write sessions and the stub state.

    Args:
        spec: the board's facts (chip, MAC, revision, security flags).
        flash: its flash memory.
        baud: the line rate the ROM starts at.
    """

    def __init__(self, spec: BoardSpec, flash: FlashMemory, baud: int = 115200) -> None:
        self.spec = spec
        self.chip = spec.model
        self.flash = flash
        self.baud = baud
        self.stub = False
        self.stay_in_bootloader = False
        self.attached = False  # the ROM has not attached the SPI flash yet
        self.running_ram = False  # RAM code (not the stub) was started: the loader is gone
        self._efuses = efuse_registers(
            self.chip, spec.mac_bytes, revision=spec.revision,
            secure_boot=spec.secure_boot, flash_encryption=spec.flash_encryption,
        )
        self._regs: dict[int, int] = {}
        self._write: dict | None = None
        self._mem: dict | None = None

    # --- state ---------------------------------------------------------------------
    def reset(self) -> None:
        """Chip reset into the ROM: the stub and RAM are gone, flash is kept."""
        self.stub = False
        self.stay_in_bootloader = False
        self.attached = False
        self.running_ram = False
        self.baud = 115200
        self._regs.clear()
        self._write = None
        self._mem = None

    # --- framing -------------------------------------------------------------------
    def _status_len(self) -> int:
        return 2 if self.stub else self.chip.rom_status_len

    def _reply(self, op: int, data: bytes = b"", value: int = 0, error: int = 0) -> bytes:
        status = bytes([1 if error else 0, error]) + b"\x00" * (self._status_len() - 2)
        body = data + status
        return struct.pack("<BBHI", 1, op, len(body), value) + body

    # --- dispatch ------------------------------------------------------------------
    def handle(self, packet: bytes) -> Iterator[bytes | Action]:
        """Process one request packet; yield reply packets and actions."""
        if len(packet) < 8 or packet[0] != 0 or self.running_ram:
            return  # not a request (e.g. a read-flash ack), or no loader runs: ignored
        _, op, size, chk = struct.unpack("<BBHI", packet[:8])
        data = packet[8 : 8 + size]
        handler = self._handler(op)
        if handler is None:
            yield self._reply(op, error=STUB_NOT_IMPLEMENTED if self.stub else ROM_INVALID_MESSAGE)
            return
        try:
            yield from handler(op, data, chk)
        except ProtocolError as exc:
            yield self._reply(op, error=exc.code)
        except (FlashRangeError, struct.error, IndexError):
            yield self._reply(op, error=STUB_BAD_DATA_LEN if self.stub else ROM_FAILED_TO_ACT)

    def _handler(self, op: int):
        if not self.stub:
            if op in STUB_ONLY_OPS:
                return None
            if not self.chip.rom_has_flash_cmds and op not in ESP8266_ROM_OPS:
                return None
            if op == GET_SECURITY_INFO and self.chip.chip_id is None:
                return None
        elif op in ROM_ONLY_OPS or op == GET_SECURITY_INFO and self.chip.chip_id is None:
            return None
        return {
            SYNC: self._sync, READ_REG: self._read_reg, WRITE_REG: self._write_reg,
            GET_SECURITY_INFO: self._security_info, SPI_ATTACH: self._spi_attach,
            SPI_SET_PARAMS: self._ack, CHANGE_BAUDRATE: self._change_baud,
            MEM_BEGIN: self._mem_begin, MEM_DATA: self._mem_data, MEM_END: self._mem_end,
            FLASH_BEGIN: self._flash_begin, FLASH_DATA: self._flash_data, FLASH_END: self._flash_end,
            FLASH_DEFL_BEGIN: self._flash_begin, FLASH_DEFL_DATA: self._flash_data,
            FLASH_DEFL_END: self._flash_end, SPI_FLASH_MD5: self._md5,
            READ_FLASH_SLOW: self._read_flash_slow, READ_FLASH: self._read_flash,
            ERASE_FLASH: self._erase_flash, ERASE_REGION: self._erase_region,
            RUN_USER_CODE: self._run_user_code,
        }.get(op)

    # --- commands ------------------------------------------------------------------
    def _ack(self, op, data, chk):
        yield self._reply(op)

    def _spi_attach(self, op, data, chk):
        self.attached = True
        yield self._reply(op)

    def _sync(self, op, data, chk):
        if data[:36] != SYNC_PAYLOAD:
            raise ProtocolError(ROM_INVALID_MESSAGE)
        value = 0 if self.stub else ROM_SYNC_VALUE
        for _ in range(8):
            yield self._reply(op, value=value)

    def _reg_value(self, addr: int) -> int:
        if addr in self._regs:
            return self._regs[addr]
        if addr in self._efuses:
            return self._efuses[addr]
        if addr == self.chip.uart_clkdiv_reg:
            xtal = 26e6 if self.chip.name == "esp8266" else 40e6
            return int(xtal * self.chip.xtal_divider / self.baud) & 0xFFFFF
        return 0

    def _read_reg(self, op, data, chk):
        (addr,) = struct.unpack("<I", data[:4])
        yield self._reply(op, value=self._reg_value(addr))

    def _write_reg(self, op, data, chk):
        for i in range(0, len(data) - 15, 16):
            addr, value, mask, _delay = struct.unpack("<IIII", data[i : i + 16])
            old = self._reg_value(addr)
            self._regs[addr] = (old & ~mask | value & mask) & 0xFFFFFFFF
            if addr == self.chip.spi_cmd_reg and value & SPI_CMD_USR:
                self._spi_command()
        yield self._reply(op)

    def _spi_command(self) -> None:
        attached = self.attached or self.stub
        spi_user_command(self.chip.name, self._regs, self.flash.chip if attached else None)

    def _security_info(self, op, data, chk):
        info = security_info(self.chip, secure_boot=self.spec.secure_boot,
                             flash_encryption=self.spec.flash_encryption)
        yield self._reply(op, info)

    def _change_baud(self, op, data, chk):
        new, _old = struct.unpack("<II", data[:8])
        yield self._reply(op)
        self.baud = new
        yield Action("baud", new)

    # RAM download: only the stub is ever uploaded; remember that it was.
    def _mem_begin(self, op, data, chk):
        size, blocks, blocksize, offset = struct.unpack("<IIII", data[:16])
        self._mem = {"size": size, "received": 0, "offset": offset}
        yield self._reply(op)

    def _mem_data(self, op, data, chk):
        if self._mem is None:
            raise ProtocolError(ROM_FAILED_TO_ACT)
        length, _seq, _, _ = struct.unpack("<IIII", data[:16])
        block = data[16 : 16 + length]
        if len(block) != length or checksum(block) != chk & 0xFF:
            raise ProtocolError(ROM_BAD_CRC)
        addr = self._mem["offset"] + self._mem["received"]
        for i in range(0, length - length % 4, 4):  # RAM, readable with READ_REG
            self._regs[addr + i] = int.from_bytes(block[i : i + 4], "little")
        self._mem["received"] += length
        yield self._reply(op)

    def _mem_end(self, op, data, chk):
        no_entry, entry = struct.unpack("<II", data[:8])
        yield self._reply(op)
        if not no_entry and entry:
            if entry in stub_entries(self.chip.name):
                self.stub = True  # the uploaded code is the flasher stub: it greets
                self.attached = True  # and attaches the flash as it starts
                yield b"OHAI"
            else:
                self.running_ram = True  # the ROM jumped into the user's RAM code

    def _flash_begin(self, op, data, chk):
        size, blocks, blocksize, offset = struct.unpack("<IIII", data[:16])
        if offset + size > self.flash.size and size:
            raise ProtocolError(STUB_BAD_DATA_LEN if self.stub else ROM_FAILED_TO_ACT)
        rom_8266 = self.chip.name == "esp8266" and not self.stub
        if rom_8266:
            self.attached = True  # the ESP8266 ROM attaches the flash on FLASH_BEGIN
        self.flash.chip.unlock()
        if size and rom_8266:
            start, length = esp8266_rom_erase(offset, size)
            self.flash.erase_sectors(start, min(length, self.flash.size - start))
        elif size:
            self.flash.erase_sectors(offset, size)
        self._write = {
            "offset": offset, "pos": offset, "seq": 0, "size": size,
            "inflate": zlib.decompressobj() if op == FLASH_DEFL_BEGIN else None,
        }
        yield self._reply(op)

    def _flash_data(self, op, data, chk):
        session = self._write
        if session is None or (op == FLASH_DEFL_DATA) != (session["inflate"] is not None):
            raise ProtocolError(0xC6 if self.stub else ROM_FAILED_TO_ACT)
        length, seq, _, _ = struct.unpack("<IIII", data[:16])
        block = data[16 : 16 + length]
        if len(block) != length:
            raise ProtocolError(STUB_BAD_DATA_LEN if self.stub else ROM_INVALID_MESSAGE)
        if checksum(block) != chk & 0xFF:
            raise ProtocolError(STUB_BAD_CHECKSUM if self.stub else ROM_BAD_CRC)
        if session["inflate"] is not None:
            try:
                block = session["inflate"].decompress(block)
            except zlib.error:
                raise ProtocolError(STUB_INFLATE_ERROR if self.stub else ROM_DEFLATE_ERROR) from None
        else:
            # uncompressed blocks are padded with 0xFF past the image; keep what fits
            block = block[: max(0, self.flash.size - session["pos"])]
        self.flash.program(session["pos"], block)
        session["pos"] += len(block)
        session["seq"] = seq + 1
        yield self._reply(op)

    def _flash_end(self, op, data, chk):
        stay = struct.unpack("<I", data[:4])[0] if len(data) >= 4 else 1
        self._write = None
        yield self._reply(op)
        if self.stub:
            if not stay:  # stub "reboot" = back to the ROM loader (esptool --after no-reset)
                self.stub = False
                self.stay_in_bootloader = True
        else:
            yield Action("boot")  # ROM: leave the loader, run the app (reboot or jump)

    def _md5(self, op, data, chk):
        addr, size = struct.unpack("<II", data[:8])
        digest = hashlib.md5()
        pos, end = addr, addr + size
        self.flash._check(addr, size)
        while pos < end:
            n = min(0x10000, end - pos)
            digest.update(self.flash.read(pos, n))
            pos += n
        out = digest.digest() if self.stub else digest.hexdigest().encode()
        yield self._reply(op, out)

    def _read_flash_slow(self, op, data, chk):
        addr, size = struct.unpack("<II", data[:8])
        if self._mem is not None and self._regs.get(S3_ROM_READ_FN_PTR) and self.chip.name == "esp32s3":
            # esptool's secure-boot workaround: the ROM's flash read pointer was aimed
            # at the uploaded stub, and this read jumps into it (no reply, just OHAI)
            self.stub = True
            self._mem = None
            yield b"OHAI"
            return
        if size > 64:
            raise ProtocolError(ROM_FAILED_TO_ACT)
        chunk = self.flash.read(addr, size)
        yield self._reply(op, chunk + b"\xff" * (64 - size))

    def _read_flash(self, op, data, chk):
        addr, size, packet, _inflight = struct.unpack("<IIII", data[:16])
        self.flash._check(addr, size)
        if packet == 0:
            raise ProtocolError(STUB_BAD_DATA_LEN)
        yield self._reply(op)
        digest = hashlib.md5()
        pos, end = addr, addr + size
        while pos < end:
            chunk = self.flash.read(pos, min(packet, end - pos))
            digest.update(chunk)
            pos += len(chunk)
            yield chunk
        yield digest.digest()

    def _erase_flash(self, op, data, chk):
        self.flash.erase(0, self.flash.size)
        yield self._reply(op)

    def _erase_region(self, op, data, chk):
        offset, size = struct.unpack("<II", data[:8])
        if offset % 0x1000 or size % 0x1000:
            raise ProtocolError(STUB_BAD_DATA_LEN)
        self.flash.erase(offset, size)
        yield self._reply(op)

    def _run_user_code(self, op, data, chk):
        yield Action("boot")
