"""Turn esptool and serial failures into one line an operator can act on.

`advise(error_text, platform=...)` returns an `Advice` (short problem, what to do); the full
esptool text stays available as details on the tile and in the per-board export.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Advice:
    """Operator-facing explanation of a failure.

    Attributes:
        problem: one line saying what happened.
        action: what to do next.
        code: a stable key for tests and exports.
    """

    problem: str
    action: str
    code: str

    def line(self) -> str:
        return f"{self.problem} — {self.action}"


class _PerPlatform(dict):
    """An action that depends on the OS: the text of the first platform prefix (``sys.platform``)
    the platform starts with; ``""`` (last) for any other."""

    def __call__(self, platform: str) -> str:
        return next(text for prefix, text in self.items() if platform.startswith(prefix))


_PERMISSION_FIX = _PerPlatform({
    "linux": ("add yourself to the serial group: `sudo usermod -aG dialout $USER` (Arch: uucp), "
              "then log out and in; or install a udev rule giving the port MODE=0660 GROUP=dialout"),
    "darwin": "close other apps using the port; macOS needs no group change",
    "": "close other apps using the port (Arduino IDE, a serial monitor) and retry",
})
_DRIVER_FIX = _PerPlatform({
    "win": ("install the USB-UART driver: Silicon Labs CP210x VCP driver for CP2102/CP2104 boards, "
            "WCH CH341SER for CH340/CH9102 boards"),
    "darwin": "install the WCH CH34x driver (CH340/CH9102 boards); CP210x works with the built-in driver on macOS 11+",
    "": "check `dmesg` for the cp210x/ch341 kernel modules and that the cable carries data",
})


# (pattern, problem, action-or-callable, code); first match wins.
_RULES: list[tuple[str, str, str | Callable[[str], str], str]] = [
    (r"cancelled by the operator", "Stopped by the operator", "press START to flash again", "cancelled"),
    (r"cannot start the firmware", "The virtual board cannot run the flashed firmware",
     "install the MicroPython unix port: pip install 'fleetdesk[virtual]', then flash again", "no-runtime"),
    (r"does not boot the new firmware", "The board does not boot the flashed firmware",
     "check the bundle is for this board (chip, flash size and mode), then flash again; the console is in Details",
     "boot-failure"),
    (r"No serial data received", "The board did not answer (no serial data)",
     "hold BOOT and press EN to enter the bootloader, or check the cable is not charge-only", "no-serial-data"),
    (r"Wrong boot mode detected|boot:0x[0-9a-f]+ \(SPI_FAST_FLASH_BOOT\)", "The board is running its app, not the bootloader",
     "hold BOOT and press EN, then retry", "wrong-boot-mode"),
    (r"Failed to connect|Unable to verify flash chip connection|Timed out waiting for packet header",
     "Could not talk to the bootloader", "hold BOOT and press EN to enter the bootloader; try another USB cable or port",
     "failed-to-connect"),
    (r"falling back to 115200", "Fast baud rate failed", "flashed at 115200 instead; check cable quality or lower the station baud",
     "baud-fallback"),
    # a missing file (a policy, a template, the bundle) is not a missing port: only /dev/... paths are ports
    (r"No such file or directory: '(?!/dev/)[^']+'", "A file fleetdesk needs is missing",
     "check the path in Details; if it is one of fleetdesk's own files, reinstall fleetdesk "
     "(pip install --force-reinstall fleetdesk)", "file-missing"),
    (r"Permission denied|Errno 13", "No permission to open the serial port", _PERMISSION_FIX, "permission"),
    (r"could not open port .*(No such file|FileNotFound)|Errno 2|Could not exclusively lock|Errno 111|Connection refused",
     "The port is gone", "re-plug the board (it may have been unplugged or re-enumerated)", "port-gone"),
    (r"port is busy|Resource busy|Errno 16|in use by PID", "The port is in use by another program",
     "close the serial monitor or other tool holding it", "port-busy"),
    (r"driver|Errno 5|Input/output error", "The USB-serial driver reported an error", _DRIVER_FIX, "driver"),
    (r"MD5 of file does not match|Write failed", "The written data did not verify",
     "flash again; if it repeats, the flash chip or power supply is faulty", "verify-failed"),
    (r"secure boot", "Secure boot is enabled on this board", "use a bundle signed for it; nothing was written",
     "secure-boot"),
    (r"flash encryption", "Flash encryption is enabled on this board", "use an encrypted bundle; nothing was written",
     "flash-encryption"),
    (r"chip revision", "The chip revision is too old for this bundle", "use a newer board or an older bundle",
     "chip-revision"),
    (r"is built for|bundle is for .* but the board is", "Wrong chip family for this bundle",
     "pick the bundle for this chip; nothing was written", "wrong-chip"),
    (r"will not fit|KB of flash|needs .* KB", "The image is larger than the board's flash",
     "use a board with more flash or a smaller bundle; nothing was written", "too-big"),
    (r"another product|different product|already carries product", "The board already carries another product's identity",
     "confirm a re-purpose to overwrite it", "other-product"),
    (r"deactivated outside this station", "The board's certificate was deactivated in the cloud",
     "press New identity only if the board should be back in service", "identity-deactivated"),
    (r"on file but missing on this board", "The board lost its identity (it is on file)",
     "press Restore identity to write it back, or New identity to give it a fresh one", "identity-missing"),
    (r"certificate pool is empty", "No certificates left in the offline pool",
     "reconnect to the cloud to refill the pool, or switch to claim provisioning", "pool-empty"),
    (r"unplugged while waiting", "The board was unplugged before it came online",
     "plug it back in and press START again", "unplugged"),
    (r"cloud|endpoint|credentials|Could not connect to the endpoint|EndpointConnectionError",
     "The cloud did not answer while creating the identity", "check the network/profile; nothing was flashed",
     "cloud-unreachable"),
    (r"online|presence", "The board booted but never came online",
     "check Wi-Fi credentials and the endpoint in the profile; see the console lines", "not-online"),
    (r"Connection reset|Broken pipe|SerialException|device disconnected|Errno 104|Errno 32|lost connection",
     "The board disconnected during the job", "re-plug the board and flash again", "disconnected"),
    (r"worker died|timeout|no answer within", "The flashing tool stopped answering", "re-plug the board and retry",
     "worker-died"),
]


def advise(text: str, platform: str | None = None) -> Advice:
    """Map an error text (esptool/serial/pipeline) to operator advice.

    A Fleetdesk error's text carries its own advice after ``"\n  -> "``: the rules look at the
    message only, and that advice is used when no rule knows the message better.
    """
    platform = platform or sys.platform
    message, _, own = (text or "").partition("\n  -> ")
    for pattern, problem, action, code in _RULES:
        if re.search(pattern, message, re.IGNORECASE):
            return Advice(problem, action(platform) if callable(action) else action, code)
    first = (message or "unknown error").strip().splitlines()[0][:160]
    if own.strip():
        return Advice(first, own.strip().splitlines()[0], "refused")
    return Advice(first, "see details; re-plug the board and retry", "unknown")
