"""Serial port discovery and hot-plug: pyserial ``comports()`` plus registered virtual ports.

A port is probed (bootloader sync bytes sent) only when it is a known USB-UART bridge or
Espressif native USB (CP210x, CH340/CH9102, FTDI, VID 303A), a registered virtual board, or
a VID:PID the operator allowed: never a phone, a GPS or a 3D printer.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable

# Known USB-serial bridges used on ESP boards (vendor id: vendor, {product id: chip}), and
# Espressif's own VID (native USB, any product id).
_BRIDGES: dict[int, tuple[str, dict[int, str]]] = {
    0x10C4: ("Silicon Labs", {0xEA60: "CP210x", 0xEA70: "CP2105", 0xEA71: "CP2108"}),
    0x1A86: ("WCH", {0x7523: "CH340", 0x5523: "CH341", 0x55D3: "CH343", 0x55D4: "CH9102"}),
    0x0403: ("FTDI", {0x6001: "FT232R", 0x6010: "FT2232", 0x6011: "FT4232", 0x6014: "FT232H", 0x6015: "FT231X"}),
}
KNOWN_USB_IDS: dict[tuple[int, int | None], str] = {
    **{(vid, pid): f"{vendor} {chip}" for vid, (vendor, chips) in _BRIDGES.items() for pid, chip in chips.items()},
    (0x303A, None): "Espressif native USB",
}


@dataclass
class PortInfo:
    """One serial port the station can see.

    Attributes:
        device: what esptool opens (``/dev/ttyUSB0``, ``COM3``, ``socket://127.0.0.1:PORT``).
        kind: "usb", "virtual" or "serial" (no USB ids: a built-in UART or an unknown device).
        vid, pid: USB ids (None when not USB).
        serial_number, description, manufacturer, hwid: as pyserial reports them.
        location: USB location path (hub/port chain); stable across re-enumeration, so a
            station slot binds to it. Virtual boards report their registry location.
        bridge: the known bridge name for the VID:PID, or "".
        chip, mac: known without probing (virtual boards announce them).
    """

    device: str
    kind: str = "serial"
    vid: int | None = None
    pid: int | None = None
    serial_number: str | None = None
    description: str = ""
    manufacturer: str | None = None
    location: str | None = None
    hwid: str = ""
    bridge: str = ""
    chip: str | None = None
    mac: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def usb_id(self) -> str:
        """``VID:PID`` in hex, or "" when not a USB device."""
        return f"{self.vid:04X}:{self.pid:04X}" if self.vid is not None and self.pid is not None else ""

    @property
    def slot_key(self) -> str:
        """What a station slot binds to: the USB location when known, else the device name."""
        if self.location:
            return f"{self.kind}:{self.location}"
        return self.device

    def to_json(self) -> dict:
        d = asdict(self)
        d["usb_id"] = self.usb_id
        d["slot_key"] = self.slot_key
        return d


def bridge_name(vid: int | None, pid: int | None) -> str:
    """Name of the known USB-UART bridge for VID:PID, or ""."""
    if vid is None:
        return ""
    return KNOWN_USB_IDS.get((vid, pid)) or KNOWN_USB_IDS.get((vid, None)) or ""


def parse_usb_id(text: str) -> tuple[int, int]:
    """Parse an operator-supplied ``VID:PID`` (hex) into integers.

    Raises:
        ValueError: when the text is not two hex numbers separated by a colon.
    """
    try:
        vid_s, pid_s = text.strip().split(":")
        return int(vid_s, 16), int(pid_s, 16)
    except ValueError as exc:
        raise ValueError(f"{text!r} is not a USB id; write it as VID:PID in hex, e.g. 10C4:EA60") from exc


def may_probe(port: PortInfo, allowed: Iterable[tuple[int, int]] = ()) -> bool:
    """True when bootloader sync bytes may be sent to this port.

    Virtual boards and known ESP bridges are probed; any other USB device only when the
    operator added its VID:PID; a non-USB serial port (no ids) never automatically.
    """
    if port.kind == "virtual":
        return True
    if port.vid is None:
        return False
    if bridge_name(port.vid, port.pid):
        return True
    return (port.vid, port.pid) in set(allowed)


def _from_pyserial(info) -> PortInfo:
    kind = "usb" if info.vid is not None else "serial"
    return PortInfo(
        device=info.device,
        kind=kind,
        vid=info.vid,
        pid=info.pid,
        serial_number=info.serial_number,
        description=info.description if info.description not in (None, "n/a") else "",
        manufacturer=info.manufacturer,
        location=info.location,
        hwid=info.hwid or "",
        bridge=bridge_name(info.vid, info.pid),
    )


def _get(entry, key, default=None):
    if isinstance(entry, dict):
        return entry.get(key, default)
    return getattr(entry, key, default)


def virtual_ports() -> list[PortInfo]:
    """Registered virtual boards."""
    from fleetdesk.virtual import registry

    out = []
    try:
        entries = registry.list_virtual_ports()
    except Exception:  # noqa: BLE001 - a torn registry file must not break discovery
        return []
    for entry in entries:
        device = _get(entry, "port") or _get(entry, "device")
        if not device:
            continue
        out.append(
            PortInfo(
                device=device,
                kind="virtual",
                description=f"virtual {_get(entry, 'chip', 'esp32')}",
                location=_get(entry, "location") or device,
                vid=_get(entry, "usb_vid"),
                pid=_get(entry, "usb_pid"),
                chip=_get(entry, "chip"),
                mac=_get(entry, "mac"),
                extra={"pid": _get(entry, "pid")},
            )
        )
    return out


def list_ports(include_serial: bool = True) -> list[PortInfo]:
    """All ports now: pyserial ``comports()`` then registered virtual ports, sorted by device.

    Args:
        include_serial: also list non-USB serial ports (they are listed, never auto-probed).
    """
    from serial.tools import list_ports as lp

    ports = [_from_pyserial(i) for i in lp.comports()]
    if not include_serial:
        ports = [p for p in ports if p.kind != "serial"]
    ports += virtual_ports()
    return sorted(ports, key=lambda p: p.device)


def pids_using(device: str) -> list[int]:
    """PIDs of other processes holding ``device`` open (Linux /proc scan; [] elsewhere)."""
    if device.startswith(("socket://", "rfc2217://")) or not Path("/proc").is_dir():
        return []
    try:
        target = os.path.realpath(device)
    except OSError:
        return []
    found = []
    me = os.getpid()
    for pid_dir in Path("/proc").iterdir():
        if not pid_dir.name.isdigit() or int(pid_dir.name) == me:
            continue
        try:
            for fd in (pid_dir / "fd").iterdir():
                try:
                    if os.readlink(fd) == target:
                        found.append(int(pid_dir.name))
                        break
                except OSError:
                    continue
        except OSError:
            continue
    return found


class PortWatcher:
    """Polls the port list and reports plug/unplug within ``interval`` seconds.

    Callbacks run on the watcher's thread; the GUI hands them to gui/bridge.py.

    Args:
        on_change: called with (added: list[PortInfo], removed: list[PortInfo]).
        interval: poll period in seconds (0.25 s keeps hot-plug well under 1 s).
        lister: the port source (``list_ports`` by default; tests may pass another).
    """

    def __init__(
        self,
        on_change: Callable[[list[PortInfo], list[PortInfo]], None],
        interval: float = 0.25,
        lister: Callable[[], list[PortInfo]] = list_ports,
    ) -> None:
        self._on_change = on_change
        self._interval = interval
        self._lister = lister
        self._known: dict[str, PortInfo] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def ports(self) -> list[PortInfo]:
        return list(self._known.values())

    def poll(self) -> tuple[list[PortInfo], list[PortInfo]]:
        """Compare the current list with the last one; report and return (added, removed)."""
        try:
            now = {p.device: p for p in self._lister()}
        except Exception:  # noqa: BLE001 - a failed listing is retried at the next poll
            return [], []
        added = [p for d, p in now.items() if d not in self._known]
        removed = [p for d, p in self._known.items() if d not in now]
        self._known = now
        if added or removed:
            self._on_change(added, removed)
        return added, removed

    def start(self) -> "PortWatcher":
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="port-watcher", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            self.poll()
            self._stop.wait(max(0.0, self._interval - (time.monotonic() - started)))

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None


def location_of(port: str) -> str | None:
    """The USB location of a port now (None when unknown or discovery fails)."""
    try:
        return next((p.location for p in list_ports(include_serial=False) if p.device == port), None)
    except Exception:  # noqa: BLE001 - discovery trouble only disables following re-enumeration
        return None


def port_reappeared_at(location: str, old_port: str, window: float, cancel: threading.Event) -> str | None:
    """Poll discovery up to ``window`` s for another port at the same USB location.

    None at once when ``old_port`` is still listed there (a connect failure, not a move).
    """
    deadline = time.monotonic() + window
    while True:
        try:
            found = [p.device for p in list_ports(include_serial=False) if p.location == location]
        except Exception:  # noqa: BLE001 - retried until the window closes
            found = []
        if old_port in found:
            return None  # the old port is still there: the board did not move
        if found:
            return found[0]
        if time.monotonic() >= deadline or cancel.wait(0.2):
            return None
