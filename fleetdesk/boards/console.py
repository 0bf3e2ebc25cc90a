"""A board's serial console after reset: the last lines, read in a background thread."""

from __future__ import annotations

import collections
import re
import threading

# what an ESP32/ESP8266 prints when the flashed firmware does not start: bootloader errors, a
# panic, or a reset by a watchdog or a brown-out (power-on and software resets are normal)
_BOOT_FAILURE = re.compile(
    r"invalid header|No bootable app|flash read err|Guru Meditation|Fatal exception|"
    r"E \(\d+\) (boot|flash_parts|esp_image)|rst:0x[0-9a-f]+ \((?:[A-Z0-9_]*WDT[A-Z0-9_]*|BROWNOUT_RST)")
_BOOT_START = re.compile(r"rst:0x[0-9a-f]+ \(")
_PANIC = re.compile(r"Guru Meditation|Fatal exception|abort\(\) was called")
BOOT_HEAD = 200  # lines kept from the start of the latest boot (its boot line, or why it did not start)


def boot_failure(lines) -> str | None:
    """The line saying the board's latest boot failed, or None.

    Only the latest boot counts (from the last ``rst:`` line on): a console opened after a
    flash may still hold what the board printed before it (a blank board boot-loops too).
    """
    lines = list(lines)
    starts = [i for i, line in enumerate(lines) if _BOOT_START.search(line)]
    for line in lines[starts[-1] if starts else 0:]:
        if _BOOT_FAILURE.search(line):
            return line.strip()
    return None


class ConsoleReader:
    """Reads a board's serial console after reset, keeping the last lines.

    On ``socket://`` virtual boards a connection with no bootloader traffic is a terminal;
    on real ports DTR/RTS are held low so opening does not reset the board.
    """

    def __init__(self, port: str, keep: int = 60) -> None:
        self.port = port
        self.lines: collections.deque[str] = collections.deque(maxlen=keep)
        self.lost = False  # the port went away under the reader (the board was unplugged)
        self.boot_head: list[str] = []  # the first lines of the latest boot (from its last reset line)
        self.reset_by: str | None = None  # the panic that ended the boot before, when the latest is its reboot
        self._panic: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"console {port}")
        self._thread.start()

    def _run(self) -> None:
        import serial

        ser = None
        for _ in range(20):
            try:
                ser = serial.serial_for_url(self.port, do_not_open=True, baudrate=115200, timeout=0.05)
                ser.dtr = False
                ser.rts = False
                ser.open()
                break
            except (serial.SerialException, OSError, ValueError):
                ser = None
                if self._stop.wait(0.25):
                    return
        if ser is None:
            self.lines.append("(could not open the console)")
            return
        buf = b""
        try:
            while not self._stop.is_set():
                try:
                    chunk = ser.read(4096)
                except (serial.SerialException, OSError):
                    self.lines.append("(console connection lost)")
                    self.lost = not self._stop.is_set()
                    return
                if not chunk:
                    continue
                buf += chunk
                *complete, buf = buf.split(b"\n")
                for raw in complete:
                    self._keep(raw.decode("utf-8", "replace").rstrip("\r"))
        finally:
            ser.close()

    def _keep(self, line: str) -> None:
        self.lines.append(line)
        if _BOOT_START.search(line):
            # a new boot: what came before no longer counts, unless that boot ended in a panic
            # and this is the reboot it caused (a power-on is a fresh start, e.g. after a flash)
            self.reset_by = self._panic if "POWERON" not in line else None
            self._panic = None
            self.boot_head = [line]
            return
        if _PANIC.search(line):
            self._panic = line.strip()
        if len(self.boot_head) < BOOT_HEAD:
            self.boot_head.append(line)

    def stop(self) -> list[str]:
        self._stop.set()
        self._thread.join(timeout=2)
        return list(self.lines)


def open_console(port: str, baud: int = 115200, timeout: float = 0.2):
    """Open a board's serial console the way a terminal should: DTR and RTS held low before
    the port opens, so opening it neither resets the board nor holds it in the bootloader
    (an ESP32 dev board wires them to EN and GPIO0).

    Raises:
        BoardError: the port cannot be opened (missing, busy, no permission), with advice.
    """
    import serial

    from fleetdesk.errors import BoardError

    try:
        ser = serial.serial_for_url(port, do_not_open=True, baudrate=baud, timeout=timeout)
        ser.dtr = False
        ser.rts = False
        ser.open()
        return ser
    except (serial.SerialException, OSError, ValueError) as exc:
        raise BoardError(f"cannot open {port}: {getattr(exc, 'strerror', None) or exc}",
                         "is the board plugged in, and the port free of other programs?") from exc


async def stream_console(port: str, on_data, should_stop, baud: int = 115200) -> None:
    """Read a board's console until ``should_stop()`` is true, handing each chunk (text) to
    ``on_data``: the blocking reads run in worker threads, so the caller's loop stays free.

    Raises:
        BoardError: the port could not be opened, or went away (the board was unplugged).
    """
    import asyncio

    import serial

    from fleetdesk.errors import BoardError

    ser = await asyncio.to_thread(open_console, port, baud)
    try:
        while not should_stop():
            try:
                data = await asyncio.to_thread(ser.read, 4096)
            except (serial.SerialException, OSError) as exc:
                raise BoardError(f"the console of {port} went away ({exc})",
                                 "plug the board back in, then Open again") from exc
            if data:
                on_data(data.decode("utf-8", "replace"))
    finally:
        await asyncio.to_thread(ser.close)
