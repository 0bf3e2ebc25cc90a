"""The wires into a virtual board's input pins: its buttons.

The firmware's ``machine`` shim (``firmware/hal/machine.py``) connects to the address in
``$FD_GPIO`` once it arms a pin interrupt, and reads JSON lines ``{"pin": N, "level": 0|1}``.
:class:`GpioChannel` is the host end: it holds the level of every driven pin, sends them all
to a firmware that connects (each boot connects anew) and every change after that.

The board's button is active low with a pull-up, like the BOOT button of an ESP32 dev board
(GPIO0; GPIO9 on an ESP32-C3). A firmware may move it with ``button_pin`` in ``/config.json``
(``null`` = no button); :func:`button_pin` reads that the same way the firmware does.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from pathlib import Path

from fleetdesk.errors import BoardError

BOOT_BUTTON_PIN = {"esp32c3": 9}  # other chips: GPIO0
LONG_PRESS_S = 3.0  # the firmware's long press (back to Config mode)
SHORT_PRESS_S = 0.2


def default_button_pin(chip: str) -> int:
    """The BOOT button's GPIO on a dev board of this chip."""
    return BOOT_BUTTON_PIN.get(chip.lower().replace("-", "").replace("_", ""), 0)


def button_pin(fs_dir: Path, chip: str) -> int:
    """The GPIO of the board's button: ``button_pin`` in the board's /config.json, else BOOT.

    Raises:
        BoardError: the config says the board has no button (``null``) or names no valid GPIO.
    """
    try:
        cfg = json.loads((Path(fs_dir) / "config.json").read_text())
    except (OSError, ValueError):
        cfg = {}
    if not isinstance(cfg, dict) or "button_pin" not in cfg:
        return default_button_pin(chip)
    pin = cfg["button_pin"]
    if pin is None or pin is False:
        raise BoardError("This board's firmware has no button (button_pin is null in /config.json)",
                         "flash a config.json without button_pin (BOOT button) or with the button's GPIO")
    if isinstance(pin, bool) or not isinstance(pin, int) or not 0 <= pin <= 48:
        raise BoardError(f"button_pin {pin!r} in the board's /config.json is not a GPIO number",
                         "set it to the button's GPIO (0..48), e.g. 0 for the BOOT button")
    return pin


class GpioChannel:
    """Host end of the pin channel: a listening socket on 127.0.0.1 and one accept thread."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(8)
        self.address = "127.0.0.1:%d" % self._sock.getsockname()[1]
        self._levels: dict[int, int] = {}
        self._clients: list[socket.socket] = []
        self._lock = threading.Lock()
        self._connected = threading.Condition(self._lock)
        self._closed = False
        self._thread = threading.Thread(target=self._accept, name="gpio-" + self.address, daemon=True)
        self._thread.start()

    @property
    def listening(self) -> bool:
        """True while a firmware with an armed pin interrupt is connected."""
        with self._lock:
            self._prune()
            return bool(self._clients)

    def _prune(self) -> None:
        for client in list(self._clients):  # the firmware never sends: readable = closed
            try:
                if client.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b"":
                    raise ConnectionResetError
            except BlockingIOError:
                continue
            except OSError:
                self._clients.remove(client)
                client.close()

    def wait_listening(self, timeout: float) -> bool:
        """Wait until a firmware is connected (True) or `timeout` s passed (False)."""
        deadline = time.monotonic() + timeout
        with self._connected:
            self._prune()
            while not self._clients and not self._closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._connected.wait(left)
            return bool(self._clients)

    def set_pin(self, pin: int, level: int) -> None:
        """Drive input `pin` to `level` (0/1); the firmware sees the edge at once."""
        level = 1 if level else 0
        with self._lock:
            self._levels[pin] = level
            line = json.dumps({"pin": pin, "level": level}).encode() + b"\n"
            for client in list(self._clients):
                self._send(client, line)

    def _send(self, client: socket.socket, data: bytes) -> None:
        try:
            client.sendall(data)
        except OSError:  # that firmware run ended (reset): forget it
            self._clients.remove(client)
            client.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._sock.accept()
            except OSError:
                return  # closed
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                if self._closed:
                    client.close()
                    return
                # a new boot replaces the previous run's connection
                for old in self._clients:
                    old.close()
                self._clients = [client]
                self._send(client, b"".join(json.dumps({"pin": p, "level": v}).encode() + b"\n"
                                            for p, v in self._levels.items()))
                self._connected.notify_all()

    def close(self) -> None:
        """Stop accepting and drop the firmware's connection."""
        with self._lock:
            self._closed = True
            for client in self._clients:
                client.close()
            self._clients = []
            self._connected.notify_all()
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        self._thread.join(2)
