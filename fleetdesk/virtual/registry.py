"""Discovery of virtual boards: one JSON file per plugged-in board in the app data dir.

``<data dir>/virtual-ports/<port>.json`` holds ``{port, chip, mac, pid, location, name,
control}`` (plus ``usb_vid``/``usb_pid`` 303A:1001 for native-USB boards; ``pid`` is the process); it is written when a board's port opens and removed when it closes
(unplug). Entries whose process is gone are ignored (and swept), so a crashed runner
leaves no ghost ports. :func:`list_virtual_ports` is what port discovery lists beside
pyserial's ``comports()``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from fleetdesk.paths import data_dir
from fleetdesk.process import pid_alive


NATIVE_USB_VID, NATIVE_USB_PID = 0x303A, 0x1001


def registry_dir() -> Path:
    """The directory holding one file per registered virtual port."""
    path = data_dir() / "virtual-ports"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _entry_path(port_url: str) -> Path:
    return registry_dir() / (port_url.rsplit(":", 1)[-1] + ".json")


def register(board, control: str | None = None, *, plugged: bool = True) -> dict:
    """Write (atomically) the discovery entry of a board (``plugged`` False: port closed)."""
    entry = {
        "plugged": plugged,
        "port": board.url,
        "chip": board.spec.model.name,
        "mac": board.spec.mac,
        "pid": os.getpid(),
        "name": board.spec.name,
        "location": f"virtual:{board.state_dir.resolve()}/{board.spec.name}",
        "control": control or getattr(board, "control", None),
    }
    if getattr(board.spec, "native_usb", False):  # Espressif USB-Serial/JTAG
        entry["usb_vid"], entry["usb_pid"] = NATIVE_USB_VID, NATIVE_USB_PID
    path = _entry_path(board.url)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(entry))
    os.replace(tmp, path)
    return entry


def unplugged(board) -> None:
    """Mark a board unplugged: it leaves the port list but its control address stays known."""
    register(board, plugged=False)


def unregister(board) -> None:
    """Remove a board's entry (the board is gone)."""
    try:
        _entry_path(board.url).unlink()
    except FileNotFoundError:
        pass


def list_virtual_ports() -> list[dict]:
    """Plugged-in virtual ports whose process is alive, sorted by port URL."""
    return [e for e in _entries() if e.get("plugged", True)]


def lookup(port_url: str) -> dict | None:
    """The entry of a live board by port URL, plugged in or not (None if unknown)."""
    return next((e for e in _entries() if e["port"] == port_url), None)


def control(port_url: str, action: str, timeout: float = 10.0, **params) -> dict:
    """Ask the process running a board to ``unplug``, ``replug``, ``reset``, ``drop`` it or
    ``press`` its button (``seconds=...``); `params` go along with the request.

    Raises:
        BoardError: unknown board, no control channel, or the action failed.
    """
    import socket

    from fleetdesk.errors import BoardError

    entry = lookup(port_url)
    if entry is None or not entry.get("control"):
        raise BoardError(f"No running virtual board at {port_url}", "start one with `fleetdesk boards virtual`")
    host, port = entry["control"].removeprefix("tcp://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(json.dumps({**params, "port": port_url, "action": action}).encode() + b"\n")
        reply = sock.makefile("rb").readline()
    try:
        result = json.loads(reply)
    except ValueError:
        raise BoardError(f"No answer from the board process for {port_url}", "is it still running?") from None
    if not result.get("ok"):
        raise BoardError(f"Virtual board {port_url}: {result.get('error', 'failed')}",
                         result.get("advice") or "check the action name")
    return result


def _entries() -> list[dict]:
    out = []
    for path in sorted(registry_dir().glob("*.json")):
        try:
            entry = json.loads(path.read_text())
            pid = int(entry["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            continue  # torn or foreign file
        if not pid_alive(pid):
            try:
                path.unlink()
            except OSError:
                pass
            continue
        out.append(entry)
    return sorted(out, key=lambda e: e["port"])
