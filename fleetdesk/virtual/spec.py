"""BoardSpec: what a virtual board is (chip, MAC, flash, eFuse-reported state)."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field

from fleetdesk.errors import BoardError
from fleetdesk.virtual.chips import ChipModel, chip_model

FLASH_SIZES_MB = (1, 2, 4, 8, 16)


@dataclass
class BoardSpec:
    """Start-time facts of a virtual board (issue 10: refusals need them reported).

    Attributes:
        chip: chip family (esp32, esp32s3, esp32c3, esp8266).
        mac: "aa:bb:cc:dd:ee:ff"; derived from ``name`` when empty.
        name: stable board name (state file names, default MAC seed).
        flash_mb: flash size in MB (JEDEC capacity byte follows it).
        revision: chip revision, major*100+minor (e.g. 300 = v3.0).
        secure_boot: eFuses / GET_SECURITY_INFO report secure boot enabled.
        flash_encryption: eFuses / GET_SECURITY_INFO report flash encryption enabled.
        throttle: deliver bytes no faster than the line rate (baud/10 bytes/s).
        interpreter: how the flashed firmware runs after boot ("micropython" or "python").
        native_usb: USB-Serial/JTAG chip (VID 303A): a bootloader session that starts while
            the board runs out of flash re-enumerates it under a new port (same location).
        psram: a board with PSRAM (the SPIRAM MicroPython build's MB-sized GC heap); default
            the chip's stock heap without it (fleetdesk.virtual.chips.HEAP_BUDGETS).
    """

    chip: str = "esp32"
    mac: str = ""
    name: str = "board0"
    flash_mb: int = 4
    revision: int = 300
    secure_boot: bool = False
    flash_encryption: bool = False
    throttle: bool = True
    interpreter: str = "micropython"
    native_usb: bool = False
    psram: bool = False
    extra: dict = field(default_factory=dict)
    mac_seed: str = ""  # mixed into the derived MAC (e.g. the state dir: two emulator processes differ)

    def __post_init__(self) -> None:
        _ = self.model  # validates the chip name
        if self.psram:
            from fleetdesk.virtual.chips import heap_budget

            heap_budget(self.chip, psram=True)  # refuses chips without a PSRAM build
        if self.flash_mb not in FLASH_SIZES_MB:
            raise BoardError(f"Unsupported flash size {self.flash_mb} MB", "use 1, 2, 4, 8 or 16")
        if not self.mac:
            seed = f"{self.chip}/{self.name}" + (f"/{self.mac_seed}" if self.mac_seed else "")
            digest = hashlib.sha256(seed.encode()).digest()
            self.mac = ":".join(f"{b:02x}" for b in self.model.mac_oui + digest[:3])
        if len(self.mac_bytes) != 6:
            raise BoardError(f"Bad MAC address {self.mac!r}", "write it as aa:bb:cc:dd:ee:ff")

    @property
    def model(self) -> ChipModel:
        return chip_model(self.chip)

    @property
    def mac_bytes(self) -> bytes:
        try:
            return bytes(int(x, 16) for x in self.mac.split(":"))
        except ValueError:
            raise BoardError(f"Bad MAC address {self.mac!r}", "write it as aa:bb:cc:dd:ee:ff") from None

    @property
    def flash_size(self) -> int:
        return self.flash_mb << 20

    def to_dict(self) -> dict:
        """JSON-friendly form."""
        return asdict(self)
