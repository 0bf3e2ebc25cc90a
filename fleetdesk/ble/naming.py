"""What a BLE address tells about a board: its base MAC, the thing name the flash station
would give it, and the PoP a board flashed without identity uses.

An ESP32 advertises with its base (Wi-Fi station) MAC + 2 in the last byte (ESP-IDF's BT
address); the station names things from the base MAC (``fd-{mac}``), and the firmware, given
no PoP in /config.json, uses that MAC in lowercase hex as its PoP (firmware/fd/ble_config.py).
On macOS, CoreBluetooth hides addresses behind UUIDs: nothing can be derived there.
"""

from __future__ import annotations

import re

from fleetdesk.boards.identity import thing_name_for

_MAC = re.compile(r"^[0-9A-Fa-f]{2}([:-][0-9A-Fa-f]{2}){5}$")


def base_mac(address: str) -> str | None:
    """The board's base MAC ("246f28f42e3b") from its BLE address, or None (not a MAC address)."""
    if not _MAC.match(address or ""):
        return None
    raw = bytearray(bytes.fromhex(address.replace(":", "").replace("-", "")))
    raw[5] = (raw[5] - 2) & 0xFF
    return raw.hex()


def factory_pop(address: str) -> str | None:
    """The PoP of a board flashed without identity (its base MAC, lowercase hex), or None."""
    return base_mac(address)


def thing_name(address: str, fallback: str, template: str = "fd-{mac}") -> str:
    """The thing name the flash station gives this board (``fd-{mac}``); ``fallback`` when the
    address is not a MAC (e.g. the advertised name, lowercased)."""
    mac = base_mac(address)
    return thing_name_for(template, mac) if mac else fallback
