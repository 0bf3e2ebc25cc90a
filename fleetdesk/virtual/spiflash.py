"""The SPI NOR flash chip on a virtual board, as esptool's SPI "user commands" reach it.

Hand-written emulator side (there is no field library for the chip end of this bus):
esptool's ``run_spiflash_command`` programs the SPI0 controller's USR/USR1/USR2/ADDR/
MOSI_DLEN/MISO_DLEN/W0.. registers with WRITE_REG and starts the transfer with the USR
bit of SPI_CMD; :func:`spi_user_command` decodes that register image per chip (offsets
from esptool 5.x ``targets/*.py``) and hands one command byte to :class:`SpiNorChip`.

The chip is a Winbond W25Q-class part (JEDEC id EF 40 xx, the xx byte from the size):
RDID 9F, RDSR/RDSR2/RDSR3 05/35/15, WRSR/WRSR2/WRSR3 01/31/11 gated by WREN 06 (non-volatile)
or the volatile write enable 50, WRDI 04, and RDSFDP 5A (24-bit address, 8 dummy clocks)
answering a JESD216B SFDP table ("SFDP" signature, one Basic Flash Parameter Table whose
density matches the size). Block protection bits are kept and read back but not enforced:
the ROM and the flasher stub clear them (SPIUnlock) before every write, which
:meth:`SpiNorChip.unlock` models.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

SFDP_SIGNATURE = 0x50444653  # "SFDP" read as a little-endian word
JEDEC_CAPACITY = {1 << 20: 0x14, 2 << 20: 0x15, 4 << 20: 0x16, 8 << 20: 0x17, 16 << 20: 0x18}
BFPT_OFFSET = 0x80

# status register bits
SR1_WEL = 0x02
SR1_PROTECT = 0x7C  # BP0-2, TB, SEC
SR2_CMP = 0x40
SR_WRITABLE = (0xFC, 0x43, 0x64)  # SR1: BP/TB/SEC/SRP; SR2: SRL, QE, CMP; SR3: WPS, DRV0-1
SR2_LOCK_BITS = 0x38  # LB1-3: one-time programmable, can be set but never cleared
SR_FACTORY = (0x00, 0x00, 0x60)  # W25Q32JV: DRV1:0 = 11 from the factory


def _bfpt(size: int) -> bytes:
    """JESD216B Basic Flash Parameter Table (16 DWORDs) of a W25Q-class part of `size` bytes."""
    dwords = [
        0xFFF920E5,  # 4 KB erase (opcode 20), 64 B write granularity, 3-byte address, 1-1-2/1-2-2/1-4-4/1-1-4 reads
        size * 8 - 1,  # density in bits, minus one
        0x6B08EB44,  # 1-4-4 EB (4 dummy + 2 mode clocks), 1-1-4 6B (8 dummy)
        0xBB423B08,  # 1-1-2 3B (8 dummy), 1-2-2 BB (2 dummy + 2 mode clocks)
        0xFFFFFFEE,  # no 2-2-2, no 4-4-4
        0xFF00FFFF,  # 2-2-2 parameters (unsupported)
        0xFF00FFFF,  # 4-4-4 parameters (unsupported)
        0x520F200C,  # erase type 1: 4 KB opcode 20, type 2: 32 KB opcode 52
        0x0000D810,  # erase type 3: 64 KB opcode D8, type 4: none
        0x00A60236,  # typical erase times
        0xC914EA82,  # 256-byte pages, program times
        0x337663E9,  # suspend/resume
        0x757A757A,  # suspend/resume opcodes
        0x5CD5A2F7,  # deep power-down, status polling
        0xFF4DF719,  # QE bit in SR2 bit 1, 0-4-4 mode, hold/reset
        0x80F830E9,  # 4-byte addressing (not needed below 16 MB), soft reset 66/99
    ]
    return struct.pack("<16I", *dwords)


def sfdp_table(size: int) -> bytes:
    """The SFDP area: header, one parameter header, the BFPT at 0x80 (0xFF elsewhere)."""
    header = b"SFDP" + bytes([0x06, 0x01, 0x00, 0xFF])  # rev 1.6, NPH 0 (one header), unused
    param = bytes([0x00, 0x06, 0x01, 16]) + BFPT_OFFSET.to_bytes(3, "little") + b"\xff"
    area = bytearray(b"\xff" * 0x100)
    area[0:16] = header + param
    area[BFPT_OFFSET:BFPT_OFFSET + 64] = _bfpt(size)
    return bytes(area)


class SpiNorChip:
    """Command-level model of the flash chip (status registers, ids, SFDP).

    Args:
        size: flash size in bytes (decides the JEDEC capacity byte and the SFDP density).
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.jedec_id = 0xEF | (0x40 << 8) | (JEDEC_CAPACITY[size] << 16)
        self.sfdp = sfdp_table(size)
        self.nonvolatile = list(SR_FACTORY)
        self.status = list(self.nonvolatile)
        self._volatile_enable = False

    def power_cycle(self) -> None:
        """Power lost: volatile status bits reload from the non-volatile ones, WEL clears."""
        self.status = list(self.nonvolatile)
        self._volatile_enable = False

    def unlock(self) -> None:
        """SPIUnlock as the ROM and stub run it before writing: block protection cleared."""
        for regs in (self.status, self.nonvolatile):
            regs[0] &= ~SR1_PROTECT & 0xFF
            regs[1] &= ~SR2_CMP & 0xFF
        self.status[0] &= ~SR1_WEL & 0xFF

    def _write_status(self, index: int, value: int) -> None:
        enabled_nv = bool(self.status[0] & SR1_WEL)
        if not enabled_nv and not self._volatile_enable:
            return  # a write without a write enable is ignored by the chip
        targets = [self.status] + ([self.nonvolatile] if enabled_nv else [])
        for regs in targets:
            old = regs[index]
            new = (old & ~SR_WRITABLE[index]) | (value & SR_WRITABLE[index])
            if index == 1:
                new |= (old | value) & SR2_LOCK_BITS
            regs[index] = new & 0xFF

    def _end_write(self) -> None:
        self.status[0] &= ~SR1_WEL & 0xFF
        self._volatile_enable = False

    def command(self, cmd: int, *, addr: int | None, mosi: bytes, miso_bytes: int) -> bytes:
        """Run one command; returns the bytes the chip shifts out (``miso_bytes`` of them)."""
        out = b""
        if cmd == 0x9F:
            out = self.jedec_id.to_bytes(3, "little")
        elif cmd in (0x05, 0x35, 0x15):
            out = bytes([self.status[(0x05, 0x35, 0x15).index(cmd)]])
        elif cmd == 0x06:
            self.status[0] |= SR1_WEL
        elif cmd == 0x50:
            self._volatile_enable = True
        elif cmd == 0x04:
            self._end_write()
        elif cmd in (0x01, 0x31, 0x11):
            first = (0x01, 0x31, 0x11).index(cmd)
            for i, value in enumerate(mosi[: 3 - first]):
                self._write_status(first + i, value)
            if mosi:
                self._end_write()
        elif cmd == 0x5A and addr is not None:
            start = addr & 0xFFFFFF
            out = self.sfdp[start : start + miso_bytes]
        # an opcode the chip does not know leaves its output line floating high
        return (out + b"\xff" * miso_bytes)[:miso_bytes]


@dataclass(frozen=True)
class SpiRegs:
    """SPI0 controller register offsets esptool uses for user commands (esptool targets/*.py)."""

    base: int
    usr: int
    usr1: int
    usr2: int
    mosi_dlen: int | None
    miso_dlen: int | None
    w0: int
    addr_msb: bool


SPI_REGS = {
    "esp32": SpiRegs(0x3FF42000, 0x1C, 0x20, 0x24, 0x28, 0x2C, 0x80, True),
    "esp32s3": SpiRegs(0x60002000, 0x18, 0x1C, 0x20, 0x24, 0x28, 0x58, False),
    "esp32c3": SpiRegs(0x60002000, 0x18, 0x1C, 0x20, 0x24, 0x28, 0x58, False),
    "esp8266": SpiRegs(0x60000200, 0x1C, 0x20, 0x24, None, None, 0x40, True),
}
SPI_CMD_USR = 1 << 18
USR_ADDR, USR_MISO, USR_MOSI = 1 << 30, 1 << 28, 1 << 27


def spi_user_command(chip_name: str, regs: dict[int, int], flash: SpiNorChip | None) -> None:
    """Run the user command programmed into `regs` (a register file, updated in place).

    ``flash`` None: the ROM has not attached the flash yet (no SPI_ATTACH since reset), so
    nothing answers on the bus and the read shifts in ones (esptool then reports the flash
    id as ff/ffff and the size as unknown).
    """
    r = SPI_REGS[chip_name]
    get = lambda off: regs.get(r.base + off, 0)  # noqa: E731
    usr, usr1 = get(r.usr), get(r.usr1)
    cmd = get(r.usr2) & 0xFF
    if r.mosi_dlen is not None:
        mosi_bits = get(r.mosi_dlen) + 1 if usr & USR_MOSI else 0
        miso_bits = get(r.miso_dlen) + 1 if usr & USR_MISO else 0
    else:  # ESP8266: both lengths live in USR1
        mosi_bits = ((usr1 >> 17) & 0x1FF) + 1 if usr & USR_MOSI else 0
        miso_bits = ((usr1 >> 8) & 0x1FF) + 1 if usr & USR_MISO else 0
    addr = None
    if usr & USR_ADDR:
        addr_len = ((usr1 >> 26) & 0x3F) + 1
        addr = get(0x04)
        if r.addr_msb:
            addr >>= 32 - addr_len
    nbytes = (mosi_bits + 7) // 8
    words = [get(r.w0 + 4 * i) for i in range((nbytes + 3) // 4)]
    mosi = b"".join(struct.pack("<I", w) for w in words)[:nbytes]
    miso_bytes = (miso_bits + 7) // 8
    if flash is None:
        out = b"\xff" * miso_bytes
    else:
        out = flash.command(cmd, addr=addr, mosi=mosi, miso_bytes=miso_bytes)
    if miso_bits:
        value = int.from_bytes(out[:4], "little") & ((1 << min(miso_bits, 32)) - 1)
        regs[r.base + r.w0] = value
    regs[r.base] = 0  # SPI_CMD: the USR bit clears when the transfer is done
