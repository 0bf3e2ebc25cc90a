"""In-process bleak backend for virtual BLE peripherals (the firmware's `bluetooth` shim).

A virtual board's firmware (firmware/hal/bluetooth.py) serves its GATT table on a local
TCP port and advertises by writing a registry file. ``VirtualBleakScanner`` and
``VirtualBleakClient`` implement bleak's backend ABCs over that, so the same
``BleakScanner``/``BleakClient`` code paths the app uses with real radios work on
virtual boards (GUI tests, CI, macOS/Windows without BlueZ):

    BleakScanner(backend=VirtualBleakScanner)
    BleakClient(device, backend=VirtualBleakClient, mtu=185)

Wire format: see the header of firmware/hal/bluetooth.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import uuid as _uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient, NotifyCallback
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, BaseBleakScanner
from bleak.backends.service import BleakGATTService, BleakGATTServiceCollection
from bleak.exc import BleakError

from fleetdesk import paths
from fleetdesk.virtual.ble_wire import LinkClient

if TYPE_CHECKING:
    from bleak.assigned_numbers import CharacteristicPropertyName

_PROPS: tuple[tuple[int, CharacteristicPropertyName], ...] = (
    (0x0002, "read"), (0x0004, "write-without-response"), (0x0008, "write"), (0x0010, "notify"), (0x0020, "indicate"))
SCAN_PERIOD = 0.2


def registry_dir() -> Path:
    """Where virtual peripherals advertise (the board hands the same path to its firmware)."""
    return paths.ble_registry_dir()


def _alive(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def advertisements(*, probe: bool = True) -> list[dict[str, Any]]:
    """Registry entries of advertising virtual peripherals (stale ones removed)."""
    out = []
    for path in sorted(registry_dir().glob("*.json")):
        try:
            entry = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if probe and not _alive(entry["host"], entry["port"]):
            with contextlib.suppress(OSError):
                path.unlink()
            continue
        out.append(entry)
    return out


def _adv_data(entry: dict[str, Any]) -> AdvertisementData:
    manuf = {int(k): bytes.fromhex(v) for k, v in entry.get("manufacturer_data", {}).items()}
    return AdvertisementData(
        local_name=entry.get("name"), manufacturer_data=manuf, service_data={},
        service_uuids=[u.lower() for u in entry.get("service_uuids", [])], tx_power=None,
        rssi=int(entry.get("rssi", -60)), platform_data=(entry,))


class VirtualBleakScanner(BaseBleakScanner):
    """Scans the virtual registry every 0.2 s while started."""

    def __init__(self, detection_callback=None, service_uuids=None, scanning_mode="active", **kwargs: Any):
        super().__init__(detection_callback, service_uuids)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.seen_devices = {}
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        while True:
            entries = await asyncio.to_thread(advertisements)
            for entry in entries:
                adv = _adv_data(entry)
                if not self.is_allowed_uuid(adv.service_uuids):
                    continue
                device = self.create_or_update_device(entry["address"], entry["address"], entry.get("name"), entry, adv)
                self.call_detection_callbacks(device, adv)
            await asyncio.sleep(SCAN_PERIOD)


class VirtualBleakClient(BaseBleakClient):
    """GATT client over the shim's TCP transport. Extra kwarg: ``mtu`` (default 517)."""

    def __init__(self, address_or_ble_device, *, disconnected_callback=None, timeout: float = 10.0,
                 mtu: int = 517, **kwargs: Any) -> None:
        super().__init__(address_or_ble_device, disconnected_callback=disconnected_callback, timeout=timeout)
        self._entry = address_or_ble_device.details if isinstance(address_or_ble_device, BLEDevice) else None
        self._want_mtu = mtu
        self._mtu = 23
        self._name = ""
        self._notify: dict[int, NotifyCallback] = {}
        self._link = LinkClient(self._on_notify, BleakError)
        self._closing = False

    @property
    def name(self) -> str:
        return self._name or self.address

    @property
    def mtu_size(self) -> int:
        return self._mtu

    @property
    def is_connected(self) -> bool:
        return self._link.is_open

    def _find_entry(self) -> dict[str, Any]:
        if isinstance(self._entry, dict):
            return self._entry
        for entry in advertisements(probe=False):
            if entry["address"].lower() == self.address.lower():
                return entry
        raise BleakError(f"Device with address {self.address} was not found")

    async def connect(self, pair: bool = False, **kwargs: Any) -> None:
        entry = self._find_entry()
        try:
            reply = await self._link.open(entry["host"], entry["port"], self._want_mtu, self._timeout)
        except (OSError, asyncio.TimeoutError) as exc:
            await self._link.close()
            raise BleakError(f"Device with address {self.address} was not found ({exc!r})") from exc
        reply = reply or {"op": "error", "error": "connection closed"}
        if reply.get("op") != "connected":
            await self._link.close()
            raise BleakError(f"Connection refused by {self.address}: {reply.get('error')}")
        self._mtu = int(reply["mtu"])
        self._name = reply.get("name", "")
        self.services = self._build_services(reply["services"])
        self._closing = False
        self._link.start_receiving(self._lost)

    def _build_services(self, services: list[dict[str, Any]]) -> BleakGATTServiceCollection:
        coll = BleakGATTServiceCollection()
        for svc_data in services:
            first = svc_data["chars"][0]["handle"] - 2 if svc_data["chars"] else 1
            svc = BleakGATTService(svc_data, first, svc_data["uuid"])
            coll.add_service(svc)
            for ch in svc_data["chars"]:
                props = [name for bit, name in _PROPS if ch["flags"] & bit]
                coll.add_characteristic(BleakGATTCharacteristic(
                    ch, ch["handle"], str(_uuid.UUID(ch["uuid"])), props, lambda: self._mtu - 3, svc))
        return coll

    def _on_notify(self, handle: int, data: bytes) -> None:
        cb = self._notify.get(handle)
        if cb is not None:
            cb(bytearray(data))

    async def _lost(self) -> None:
        self._link.fail_pending(BleakError("Not connected"))
        unsolicited = not self._closing and self._link.writer is not None
        await self._link.close()
        if unsolicited and self._disconnected_callback is not None:
            self._disconnected_callback()

    async def disconnect(self) -> None:
        self._closing = True
        writer = self._link.writer
        if writer is not None:
            with contextlib.suppress(Exception):
                writer.write(b'{"op":"disconnect"}\n')
                await writer.drain()
        await self._link.close()
        if self._link.rx is not None:
            self._link.rx.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._link.rx
            self._link.rx = None

    def simulate_link_loss(self) -> None:
        """Drop the link abruptly (radio gone): both sides see an unsolicited disconnect."""
        if self._link.writer is not None:
            self._link.writer.transport.abort()

    async def _call(self, req: dict[str, Any], want_reply: bool = True) -> dict[str, Any]:
        if not self.is_connected:
            raise BleakError("Not connected")
        return await self._link.request(req, self._timeout, want_reply)

    async def pair(self, *args: Any, **kwargs: Any) -> None:
        return None

    async def unpair(self) -> None:
        return None

    async def read_gatt_char(self, characteristic: BleakGATTCharacteristic, **kwargs: Any) -> bytearray:
        reply = await self._call({"op": "read", "handle": characteristic.handle})
        return bytearray.fromhex(reply["data"])

    async def read_gatt_descriptor(self, descriptor, **kwargs: Any) -> bytearray:
        raise BleakError("virtual peripherals have no readable descriptors")

    async def write_gatt_char(self, characteristic: BleakGATTCharacteristic, data, response: bool) -> None:
        await self._call({"op": "write", "handle": characteristic.handle, "data": bytes(data).hex(),
                          "rsp": bool(response)}, want_reply=bool(response))

    async def write_gatt_descriptor(self, descriptor, data) -> None:
        raise BleakError("virtual peripherals have no writable descriptors")

    async def start_notify(self, characteristic: BleakGATTCharacteristic, callback: NotifyCallback,
                           **kwargs: Any) -> None:
        self._notify[characteristic.handle] = callback

    async def stop_notify(self, characteristic: BleakGATTCharacteristic) -> None:
        self._notify.pop(characteristic.handle, None)


