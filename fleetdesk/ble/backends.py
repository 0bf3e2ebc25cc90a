"""The one place that picks the BLE backend (bleak's platform radio or virtual boards).

``FLEETDESK_BLE_BACKEND=virtual`` (or ``--virtual`` on the CLI) selects the in-process
backend that reaches virtual boards' firmware; anything else uses bleak's default for
the platform (BlueZ, CoreBluetooth, WinRT).
"""

from __future__ import annotations

import os
from typing import Any

from fleetdesk.errors import BleError

KINDS = ("system", "virtual")


def ble_backends(kind: str | None = None) -> tuple[Any, Any]:
    """(scanner backend class, client backend class); (None, None) = bleak's platform default."""
    kind = kind or os.environ.get("FLEETDESK_BLE_BACKEND") or "system"
    if kind == "system":
        return None, None
    if kind == "virtual":
        from fleetdesk.virtual.ble_link import VirtualBleakClient, VirtualBleakScanner

        return VirtualBleakScanner, VirtualBleakClient
    raise BleError(f"unknown BLE backend {kind!r}", f"use one of: {', '.join(KINDS)}")
