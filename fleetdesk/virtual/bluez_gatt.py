"""The BlueZ side of a GATT peripheral we serve ourselves: the D-Bus objects BlueZ's
``GattManager1.RegisterApplication`` and ``LEAdvertisingManager1.RegisterAdvertisement`` ask
for (a primary service, the application's ObjectManager, an LE advertisement), and the calls
that register and unregister them on one adapter.

Used by the virtual board's BlueZ relay (``fleetdesk.virtual.ble_bluez``) and by the test
ESP-IDF provisioning peripheral (``tests/ble/espidf_peripheral.py``); each brings its own
characteristics. Hand-written emulator side over dbus-fast (bleak's own D-Bus library): BlueZ
has no Python peripheral API.
"""

import contextlib  # no `from __future__ import annotations`: dbus-fast reads the D-Bus signatures
from typing import Any

from fleetdesk.errors import BleError

GATT_MANAGER = "org.bluez.GattManager1"
ADVERTISING_MANAGER = "org.bluez.LEAdvertisingManager1"


def interfaces() -> tuple[type, type, type, type]:
    """``(Characteristic, Service, ObjectManager, Advertisement)``: dbus-fast ServiceInterface
    classes, made on first use (dbus-fast is Linux-only).

    * ``Characteristic(path, svc_path, uuid, flags)``: a characteristic's UUID, Service and
      Flags; a subclass adds ReadValue/WriteValue (and more properties, extending ``props()``).
    * ``Service(uuid)``: a primary GATT service.
    * ``ObjectManager(objects)``: the application root; ``objects`` maps each exported path to
      its interface (anything with ``name`` and ``props()``), read on every GetManagedObjects.
    * ``Advertisement(local_name, service_uuids)``: a connectable "peripheral" advertisement.
    """
    from dbus_fast import PropertyAccess, Variant
    from dbus_fast.service import ServiceInterface, dbus_property, method

    class Characteristic(ServiceInterface):
        def __init__(self, path: str, svc_path: str, uuid: str, flags: list[str]) -> None:
            super().__init__("org.bluez.GattCharacteristic1")
            self.path, self.svc_path, self.uuid, self.flags = path, svc_path, uuid, flags

        @dbus_property(access=PropertyAccess.READ)
        def UUID(self) -> "s":  # noqa: F821, N802
            return self.uuid

        @dbus_property(access=PropertyAccess.READ)
        def Service(self) -> "o":  # noqa: F821, N802
            return self.svc_path

        @dbus_property(access=PropertyAccess.READ)
        def Flags(self) -> "as":  # noqa: N802
            return self.flags

        def props(self) -> dict[str, Any]:
            return {"UUID": Variant("s", self.uuid), "Service": Variant("o", self.svc_path),
                    "Flags": Variant("as", self.flags)}

    class Service(ServiceInterface):
        def __init__(self, uuid: str) -> None:
            super().__init__("org.bluez.GattService1")
            self.uuid = uuid

        @dbus_property(access=PropertyAccess.READ)
        def UUID(self) -> "s":  # noqa: F821, N802
            return self.uuid

        @dbus_property(access=PropertyAccess.READ)
        def Primary(self) -> "b":  # noqa: F821, N802
            return True

        def props(self) -> dict[str, Any]:
            return {"UUID": Variant("s", self.uuid), "Primary": Variant("b", True)}

    class ObjectManager(ServiceInterface):
        def __init__(self, objects: dict[str, Any]) -> None:
            super().__init__("org.freedesktop.DBus.ObjectManager")
            self.objects = objects

        @method()
        def GetManagedObjects(self) -> "a{oa{sa{sv}}}":  # noqa: N802
            return {path: {obj.name: obj.props()} for path, obj in self.objects.items()}

    class Advertisement(ServiceInterface):
        def __init__(self, local_name: str, service_uuids: list[str]) -> None:
            super().__init__("org.bluez.LEAdvertisement1")
            self.local_name, self.service_uuids = local_name, list(service_uuids)

        @method()
        def Release(self):  # noqa: N802
            return None

        @dbus_property(access=PropertyAccess.READ)
        def Type(self) -> "s":  # noqa: F821, N802
            return "peripheral"

        @dbus_property(access=PropertyAccess.READ)
        def ServiceUUIDs(self) -> "as":  # noqa: N802
            return self.service_uuids

        @dbus_property(access=PropertyAccess.READ)
        def LocalName(self) -> "s":  # noqa: F821, N802
            return self.local_name

        @dbus_property(access=PropertyAccess.READ)
        def Discoverable(self) -> "b":  # noqa: F821, N802
            return True

        # No ManufacturerData: BlueZoo 1.x fails to export a device carrying it.

    return Characteristic, Service, ObjectManager, Advertisement


async def bluez_call(bus: Any, path: str, iface: str, member: str, sig: str, body: list[Any]) -> Any:
    """One method call to bluetoothd (or BlueZoo); returns the reply body.

    Raises:
        BleError: BlueZ answered with an error (named, with what to check).
    """
    from dbus_fast import Message, MessageType

    reply = await bus.call(Message(destination="org.bluez", path=path, interface=iface, member=member,
                                   signature=sig, body=body))
    if reply.message_type == MessageType.ERROR:
        raise BleError(f"BlueZ {member} failed: {reply.error_name} {reply.body}",
                       "Check that bluetoothd (or BlueZoo) runs and the adapter exists and is powered.")
    return reply.body


async def register(bus: Any, adapter_path: str, app_path: str | None = None, adv_path: str | None = None) -> None:
    """Register the GATT application at ``app_path`` and/or the advertisement at ``adv_path``."""
    if app_path is not None:
        await bluez_call(bus, adapter_path, GATT_MANAGER, "RegisterApplication", "oa{sv}", [app_path, {}])
    if adv_path is not None:
        await bluez_call(bus, adapter_path, ADVERTISING_MANAGER, "RegisterAdvertisement", "oa{sv}", [adv_path, {}])


async def unregister(bus: Any, adapter_path: str, app_path: str | None = None, adv_path: str | None = None) -> None:
    """Unregister what :func:`register` did; either may already be gone (not an error here)."""
    if adv_path is not None:
        with contextlib.suppress(BleError):
            await bluez_call(bus, adapter_path, ADVERTISING_MANAGER, "UnregisterAdvertisement", "o", [adv_path])
    if app_path is not None:
        with contextlib.suppress(BleError):
            await bluez_call(bus, adapter_path, GATT_MANAGER, "UnregisterApplication", "o", [app_path])
