"""A board's serial console after reset: the last lines, read in a background thread."""

from __future__ import annotations

import collections
import threading


class ConsoleReader:
    """Reads a board's serial console after reset, keeping the last lines.

    On ``socket://`` virtual boards a connection with no bootloader traffic is a terminal;
    on real ports DTR/RTS are held low so opening does not reset the board.
    """

    def __init__(self, port: str, keep: int = 60) -> None:
        self.port = port
        self.lines: collections.deque[str] = collections.deque(maxlen=keep)
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
                    return
                if not chunk:
                    continue
                buf += chunk
                *complete, buf = buf.split(b"\n")
                for raw in complete:
                    self.lines.append(raw.decode("utf-8", "replace").rstrip("\r"))
        finally:
            ser.close()

    def stop(self) -> list[str]:
        self._stop.set()
        self._thread.join(timeout=2)
        return list(self.lines)
