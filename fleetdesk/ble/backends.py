"""The one place that picks the BLE backend (bleak's platform radio or virtual boards).

In order: an explicit ``kind`` (``--virtual`` on the CLI), ``FLEETDESK_BLE_BACKEND``, the
profile's Bluetooth setting (Settings → Bluetooth; a sandbox profile defaults to virtual
boards, an AWS one to the radio). "virtual" is the in-process backend that reaches virtual
boards' firmware; "system" is bleak's default for the platform (BlueZ, CoreBluetooth, WinRT).
"""

from __future__ import annotations

import os
from typing import Any

from fleetdesk.errors import BleError

KINDS = ("system", "virtual")


def backend_kind(kind: str | None = None, profile: Any = None) -> str:
    """"virtual" or "system" (see the module docstring for the order)."""
    return (kind or os.environ.get("FLEETDESK_BLE_BACKEND")
            or (profile.ble_backend if profile is not None else "") or "system")


def ble_backends(kind: str | None = None, profile: Any = None) -> tuple[Any, Any]:
    """(scanner backend class, client backend class); (None, None) = bleak's platform default."""
    kind = backend_kind(kind, profile)
    if kind == "system":
        return None, None
    if kind == "virtual":
        from fleetdesk.virtual.ble_link import VirtualBleakClient, VirtualBleakScanner

        return VirtualBleakScanner, VirtualBleakClient
    raise BleError(f"unknown BLE backend {kind!r}", f"use one of: {', '.join(KINDS)}")
