"""What a virtual board's ROM looks like to esptool, per chip family.

Register addresses, magic values and eFuse layouts are taken from esptool 5.x's
``esptool/targets/*.py`` (the code that reads them), so the real esptool identifies
and describes a virtual board exactly as it would a real one.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from fleetdesk.errors import BoardError

CHIP_DETECT_MAGIC_REG_ADDR = 0x40001000


@dataclass(frozen=True)
class ChipModel:
    """The ROM-visible facts of one chip family.

    Attributes:
        name: our short name (``esp32``, ``esp32s3``, ``esp32c3``, ``esp8266``).
        display: esptool's CHIP_NAME.
        magic: value at 0x40001000 (chips esptool identifies by magic), else None.
        chip_id: value GET_SECURITY_INFO reports (S3/C3), None when the ROM lacks it.
        rom_status_len: status bytes after each ROM reply (ESP32 family 4, ESP8266 2).
        spi_base, spi_usr2, spi_w0: SPI flash controller registers used for RDID.
        uart_clkdiv_reg: UART clock divider register (crystal estimate).
        xtal_divider: esptool's XTAL_CLK_DIVIDER.
        image_chip_id: chip id in the app image extended header (None for ESP8266).
        rom_has_flash_cmds: ROM knows SPI_ATTACH, MD5, deflate, READ_FLASH_SLOW (not ESP8266).
    """

    name: str
    display: str
    magic: int | None
    chip_id: int | None
    rom_status_len: int
    spi_base: int
    spi_usr2_offs: int
    spi_w0_offs: int
    uart_clkdiv_reg: int
    xtal_divider: int
    image_chip_id: int | None
    rom_has_flash_cmds: bool
    mac_oui: bytes

    @property
    def spi_cmd_reg(self) -> int:
        return self.spi_base

    @property
    def spi_usr2_reg(self) -> int:
        return self.spi_base + self.spi_usr2_offs

    @property
    def spi_w0_reg(self) -> int:
        return self.spi_base + self.spi_w0_offs


CHIPS: dict[str, ChipModel] = {
    "esp32": ChipModel(
        "esp32", "ESP32", 0x00F01D83, None, 4, 0x3FF42000, 0x24, 0x80, 0x3FF40014, 1, 0, True,
        bytes.fromhex("246f28"),
    ),
    "esp32s3": ChipModel(
        "esp32s3", "ESP32-S3", None, 9, 4, 0x60002000, 0x20, 0x58, 0x60000014, 1, 9, True,
        bytes.fromhex("f412fa"),
    ),
    "esp32c3": ChipModel(
        "esp32c3", "ESP32-C3", None, 5, 4, 0x60002000, 0x20, 0x58, 0x60000014, 1, 5, True,
        bytes.fromhex("58cf79"),
    ),
    "esp8266": ChipModel(
        "esp8266", "ESP8266", 0xFFF0C101, None, 2, 0x60000200, 0x24, 0x40, 0x60000014, 2, None, False,
        bytes.fromhex("18fe34"),
    ),
}


def chip_model(name: str) -> ChipModel:
    """Look up a chip family by name (case and dashes ignored).

    Raises:
        BoardError: the chip is not one a virtual board can be.
    """
    key = name.lower().replace("-", "").replace("_", "")
    try:
        return CHIPS[key]
    except KeyError:
        raise BoardError(
            f"Unknown chip {name!r} for a virtual board",
            f"use one of: {', '.join(CHIPS)}",
        ) from None


# --- eFuse images -----------------------------------------------------------------

_ESP32_EFUSE = 0x3FF5A000
_ESP32_APB_CTL_DATE = 0x3FF66000 + 0x7C
_ESP32_RTCCALICFG1 = 0x3FF5F06C
_S3_EFUSE = 0x60007000
_C3_EFUSE = 0x60008800
_ESP8266_OTP = (0x3FF00050, 0x3FF00054, 0x3FF00058, 0x3FF0005C)


def _crc8_placeholder(mac: bytes) -> int:
    return sum(mac) & 0xFF


def efuse_registers(chip: ChipModel, mac: bytes, *, revision: int, secure_boot: bool,
                    flash_encryption: bool) -> dict[int, int]:
    """Register values that encode MAC, revision and security state as esptool reads them.

    Args:
        chip: the chip family.
        mac: six MAC bytes.
        revision: chip revision as esptool reports it (major * 100 + minor).
        secure_boot: report secure boot enabled.
        flash_encryption: report flash encryption enabled (odd SPI_BOOT_CRYPT_CNT).
    """
    major, minor = divmod(revision, 100)
    regs: dict[int, int] = {}
    if chip.name == "esp32":
        # read_mac: words = [efuse(2), efuse(1)] packed big-endian, first 2 bytes CRC
        word2 = (_crc8_placeholder(mac) << 24) | (mac[0] << 8) | mac[1]
        word1 = int.from_bytes(mac[2:6], "big")
        regs[_ESP32_EFUSE + 4] = word1
        regs[_ESP32_EFUSE + 8] = word2
        combine = {0: 0, 1: 1, 2: 3, 3: 7}.get(major, 0)
        word3 = (combine & 1) << 15
        word5 = ((combine >> 1) & 1) << 20 | (minor & 3) << 24
        regs[_ESP32_EFUSE + 12] = word3
        regs[_ESP32_EFUSE + 20] = word5
        regs[_ESP32_APB_CTL_DATE] = ((combine >> 2) & 1) << 31
        regs[_ESP32_EFUSE + 0x18] = (1 << 4) if secure_boot else 0  # ABS_DONE_0
        regs[_ESP32_EFUSE] = (1 << 20) if flash_encryption else 0  # FLASH_CRYPT_CNT
        # ROM-calculated crystal: cali * 15625 * ck8m / 40 == 40 MHz
        regs[_ESP32_EFUSE + 16] = 100  # EFUSE_RD_CK8M_FREQ (word 4, low byte)
        regs[_ESP32_RTCCALICFG1] = 1024 << 7
    elif chip.name in ("esp32s3", "esp32c3"):
        base = _S3_EFUSE if chip.name == "esp32s3" else _C3_EFUSE
        block1 = base + 0x44
        regs[block1] = int.from_bytes(mac[2:6], "big")  # MAC_EFUSE_REG
        word1 = int.from_bytes(mac[0:2], "big")
        word3 = (minor & 7) << 18
        word5 = (major & 3) << 24 | ((minor >> 3) & 1) << 23
        regs[block1 + 4] = word1
        regs[block1 + 12] = word3
        regs[block1 + 20] = word5
        regs[base + 0x38] = (1 << 20) if secure_boot else 0
        regs[base + 0x34] = (1 << 18) if flash_encryption else 0
    else:  # esp8266: OUI 18:fe:34 when MAC1 bits 16..23 == 0
        mac0 = mac[5] << 24
        mac1 = (mac[3] << 8) | mac[4]
        regs[_ESP8266_OTP[0]] = mac0
        regs[_ESP8266_OTP[1]] = mac1
        regs[_ESP8266_OTP[3]] = int.from_bytes(mac[0:3], "big") if mac[0:3] != b"\x18\xfe\x34" else 0
    if chip.magic is not None:
        regs[CHIP_DETECT_MAGIC_REG_ADDR] = chip.magic
    return regs


def security_info(chip: ChipModel, *, secure_boot: bool, flash_encryption: bool) -> bytes:
    """GET_SECURITY_INFO payload (20 bytes) for chips whose ROM has it."""
    flags = 1 if secure_boot else 0
    crypt_cnt = 1 if flash_encryption else 0
    return struct.pack("<IBBBBBBBBII", flags, crypt_cnt, 0, 0, 0, 0, 0, 0, 0, chip.chip_id or 0, 1)


# --- GC heap budgets ------------------------------------------------------------------

@dataclass(frozen=True)
class HeapBudget:
    """The MicroPython GC heap a stock build gives on one chip (bytes, as the chip counts them).

    Attributes:
        initial: the heap MicroPython starts with (``MICROPY_GC_INITIAL_HEAP_SIZE``).
        heap: what the firmware can count on: the initial heap after its one growth from
            the IDF heap (ESP32 family, ``MICROPY_GC_SPLIT_HEAP_AUTO``); ESP8266's is fixed.
        idf_left: internal RAM still free for Wi-Fi, NimBLE and mbedTLS at that heap size.
        psram: the GC heap of the SPIRAM build of that board (``--psram``).
        source: where the numbers come from.
    """

    initial: int
    heap: int
    idf_left: int
    psram: int | None
    source: str


_MPCONFIG = "micropython ports/esp32/mpconfigport.h (1.22-1.25): MICROPY_GC_INITIAL_HEAP_SIZE"
HEAP_BUDGETS: dict[str, HeapBudget] = {
    # 56 KB start, "can grow the heap once (double it) and still have enough internal RAM to
    # start WiFi and make a HTTPS request" (mpconfigport.h); ~40 KB IDF heap left after that.
    "esp32": HeapBudget(56 << 10, 112 << 10, 40 << 10, 4 << 20, _MPCONFIG + " 56 KB (CONFIG_IDF_TARGET_ESP32)"),
    "esp32s3": HeapBudget(64 << 10, 128 << 10, 40 << 10, 8 << 20, _MPCONFIG + " 64 KB (other targets)"),
    "esp32c3": HeapBudget(64 << 10, 128 << 10, 40 << 10, None, _MPCONFIG + " 64 KB (other targets)"),
    # ports/esp8266/main.c: static char heap[38 * 1024]; no growth, TLS (axTLS) shares it.
    "esp8266": HeapBudget(38 << 10, 38 << 10, 0, None, "micropython ports/esp8266/main.c heap[38 * 1024]"),
}


def heap_budget(chip: str, *, psram: bool = False) -> int:
    """GC heap bytes of `chip`'s stock MicroPython build (the PSRAM build's with psram=True).

    Raises:
        BoardError: unknown chip, or psram asked for a chip that has no PSRAM board.
    """
    b = HEAP_BUDGETS[chip_model(chip).name]
    if not psram:
        return b.heap
    if b.psram is None:
        raise BoardError(f"{chip} has no PSRAM MicroPython build",
                         "drop --psram (ESP32 and ESP32-S3 boards come with PSRAM)")
    return b.psram
