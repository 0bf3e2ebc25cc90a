"""Find boards in BLE Config mode: bleak scanner filtered on the provisioning service.

Filters: service UUID (always), name prefix, minimum RSSI, provisioned or not (from the
state byte in the manufacturer data, company id 0xFFFF; None when a stack drops it).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from bleak import BleakScanner
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, BaseBleakScanner

from fleetdesk.ble.session import COMPANY_ID, SERVICE_UUID
from fleetdesk.errors import BleError


@dataclass
class FoundDevice:
    """One board seen advertising the provisioning service."""

    address: str
    name: str
    rssi: int
    provisioned: bool | None
    device: BLEDevice

    def as_json(self) -> dict[str, Any]:
        """JSON-able summary (for `fleetdesk ble scan --json`)."""
        return {"address": self.address, "name": self.name, "rssi": self.rssi, "provisioned": self.provisioned}


def _provisioned(adv: AdvertisementData) -> bool | None:
    data = adv.manufacturer_data.get(COMPANY_ID)
    return bool(data[0] & 1) if data else None


async def scan(timeout: float = 5.0, *, backend: type[BaseBleakScanner] | None = None, name_prefix: str | None = "FD-",
               min_rssi: int | None = None, provisioned: bool | None = None,
               on_found: Any = None, stop_when: Any = None, **scanner_kwargs: Any) -> list[FoundDevice]:
    """Scan for ``timeout`` seconds; returns matching boards, strongest first.

    Args:
        timeout: scan duration in seconds.
        backend: bleak scanner backend (None = system radio; VirtualBleakScanner for virtual boards).
        name_prefix: keep names starting with this (None = any).
        min_rssi: drop weaker advertisements.
        provisioned: True/False to keep only (un)provisioned boards; None = both.
        on_found: optional callback(FoundDevice) called as boards appear/update (live lists).
        stop_when: optional predicate(FoundDevice); the scan ends early once one matches.
        **scanner_kwargs: passed to BleakScanner (e.g. ``bluez={"adapter": "hci0"}``).
    """
    found: dict[str, FoundDevice] = {}
    done = asyncio.Event()

    def detected(device: BLEDevice, adv: AdvertisementData) -> None:
        name = adv.local_name or device.name or ""
        if name_prefix and not name.startswith(name_prefix):
            return
        if min_rssi is not None and adv.rssi < min_rssi:
            return
        state = _provisioned(adv)
        if provisioned is not None and state is not None and state != provisioned:
            return
        item = FoundDevice(device.address, name, adv.rssi, state, device)
        found[device.address] = item
        if on_found is not None:
            on_found(item)
        if stop_when is not None and stop_when(item):
            done.set()

    try:
        async with BleakScanner(detected, service_uuids=[SERVICE_UUID], backend=backend, **scanner_kwargs):
            try:
                await asyncio.wait_for(done.wait(), timeout)
            except asyncio.TimeoutError:
                pass
    except Exception as exc:  # bleak raises BleakError/DBus/OS errors when there is no radio
        if isinstance(exc, asyncio.CancelledError):
            raise
        raise BleError(f"Bluetooth scan failed ({exc})",
                       "Check that Bluetooth is on and this user may use it (Linux: bluetoothd running, "
                       "user in the 'bluetooth' group); for virtual boards choose Bluetooth: virtual boards "
                       "in Settings (CLI: --virtual).") from exc
    return sorted(found.values(), key=lambda f: -f.rssi)
