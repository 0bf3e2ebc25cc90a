"""Put a virtual board's BLE peripheral on a BlueZ adapter (Linux, D-Bus).

``BluezPeripheralRelay`` registers a standard BlueZ GATT application
(``org.bluez.GattManager1.RegisterApplication``) and LE advertisement
(``org.bluez.LEAdvertisingManager1``) on one adapter, mirroring the firmware's GATT table,
and relays every ReadValue/WriteValue/StartNotify to the firmware's `bluetooth` shim
transport (firmware/hal/bluetooth.py). Notifications come back as ``Value`` property
changes. Centrals then reach the virtual board through BlueZ with bleak's *real* BlueZ
backend: against BlueZoo (a fake BlueZ on a private D-Bus, in tests) or a real adapter.

Uses dbus-fast (bleak's own D-Bus library); nothing here imports BlueZoo.
"""

import asyncio
import contextlib
from typing import Any

from fleetdesk.errors import BleError
from fleetdesk.virtual.ble_wire import LinkClient
from fleetdesk.virtual.bluez_gatt import interfaces, register, unregister

APP_PATH = "/org/fleetdesk/vble"
ADV_PATH = "/org/fleetdesk/vble/adv0"
_FLAGS = ((0x0002, "read"), (0x0004, "write-without-response"), (0x0008, "write"), (0x0010, "notify"))


def _characteristic(base: type) -> type:  # dbus-fast is Linux-only: import lazily
    from dbus_fast import DBusError, PropertyAccess, Variant
    from dbus_fast.service import dbus_property, method

    class Characteristic(base):  # type: ignore[misc, valid-type]
        """A characteristic of the board's GATT table, relayed to the board."""

        def __init__(self, relay: "BluezPeripheralRelay", path: str, svc_path: str, uuid: str, flags: list[str],
                     handle: int) -> None:
            super().__init__(path, svc_path, uuid, flags)
            self.relay, self.handle = relay, handle
            self.value = b""
            self.notifying = False

        @method()
        async def ReadValue(self, options: "a{sv}") -> "ay":  # noqa: F821, N802
            return await self.relay.read(self.handle)

        @method()
        async def WriteValue(self, value: "ay", options: "a{sv}"):  # noqa: F821, N802
            kind = options.get("type").value if "type" in options else "request"
            try:
                await self.relay.write(self.handle, bytes(value), kind != "command")
            except BleError as exc:
                raise DBusError("org.bluez.Error.Failed", str(exc)) from exc

        @method()
        async def StartNotify(self):  # noqa: N802
            self.notifying = True
            await self.relay.ensure_link()

        @method()
        def StopNotify(self):  # noqa: N802
            self.notifying = False

        @method()
        def Confirm(self):  # noqa: N802
            return None

        @dbus_property(access=PropertyAccess.READ)
        def Value(self) -> "ay":  # noqa: F821, N802
            return self.value

        @dbus_property(access=PropertyAccess.READ)
        def Notifying(self) -> "b":  # noqa: F821, N802
            return self.notifying

        @dbus_property(access=PropertyAccess.READ)
        def MTU(self) -> "q":  # noqa: F821, N802
            return self.relay.mtu

        def notify(self, data: bytes) -> None:
            self.value = data
            self.emit_properties_changed({"Value": data})

        def props(self) -> dict[str, Any]:
            return {**super().props(), "Value": Variant("ay", self.value),
                    "Notifying": Variant("b", self.notifying), "MTU": Variant("q", self.relay.mtu)}

    return Characteristic


class BluezPeripheralRelay:
    """Mirror one virtual peripheral (a shim registry entry) onto a BlueZ adapter.

    Args:
        entry: the registry entry (fleetdesk.virtual.ble_link.advertisements()).
        adapter: BlueZ adapter name, e.g. "hci1".
        mtu: ATT MTU the relay offers (the central sees MTU-3 as its write size).
    """

    def __init__(self, entry: dict[str, Any], adapter: str = "hci1", mtu: int = 517) -> None:
        self.entry = entry
        self.adapter_path = f"/org/bluez/{adapter}"
        self.mtu = mtu
        self.bus: Any = None
        self.objects: dict[str, Any] = {}
        self.by_handle: dict[int, Any] = {}
        self._link = LinkClient(self._on_notify, BleError)
        self._lock = asyncio.Lock()
        self._dropping: "asyncio.Task[None] | None" = None
        self._central = False

    async def start(self) -> "BluezPeripheralRelay":
        """Connect to the system bus (DBUS_SYSTEM_BUS_ADDRESS honoured), register GATT app + advertisement."""
        from dbus_fast import BusType, Message
        from dbus_fast.aio import MessageBus

        base_cls, svc_cls, om_cls, adv_cls = interfaces()
        char_cls = _characteristic(base_cls)
        services = await self._peek_services()
        self.bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
        self.bus.export(APP_PATH, om_cls(self.objects))
        for i, svc in enumerate(services):
            spath = f"{APP_PATH}/service{i}"
            s = svc_cls(svc["uuid"])
            self.objects[spath] = s
            self.bus.export(spath, s)
            for j, ch in enumerate(svc["chars"]):
                cpath = f"{spath}/char{j}"
                flags = [name for bit, name in _FLAGS if ch["flags"] & bit]
                c = char_cls(self, cpath, spath, ch["uuid"], flags, ch["handle"])
                self.objects[cpath] = c
                self.by_handle[ch["handle"]] = c
                self.bus.export(cpath, c)
        self.bus.export(ADV_PATH, adv_cls(self.entry.get("name") or "", self.entry.get("service_uuids", [])))
        await register(self.bus, self.adapter_path, APP_PATH, ADV_PATH)
        # a central disconnecting from our adapter = the BLE link to the board drops
        self.bus.add_message_handler(self._on_signal)
        await self.bus.call(Message(destination="org.freedesktop.DBus", path="/org/freedesktop/DBus",
                                    interface="org.freedesktop.DBus", member="AddMatch", signature="s",
                                    body=[f"type='signal',interface='org.freedesktop.DBus.Properties',"
                                          f"path_namespace='{self.adapter_path}'"]))
        return self

    def _on_signal(self, msg: Any) -> bool:
        if msg.member == "PropertiesChanged" and msg.body and msg.body[0] == "org.bluez.Device1":
            changed = msg.body[1]
            if "Connected" in changed:
                if changed["Connected"].value:
                    self._central = True
                elif self._central and self._dropping is None:  # once per connection
                    self._central = False
                    self._dropping = asyncio.get_running_loop().create_task(self.drop_link())
        return False

    async def _peek_services(self) -> list[dict[str, Any]]:
        peek = LinkClient(lambda handle, data: None, BleError)
        try:
            reply = await peek.open(self.entry["host"], self.entry["port"], 23, 10)
        finally:
            await peek.close()
        if reply.get("op") != "connected":
            raise BleError(f"virtual board {self.entry.get('name')} refused the relay: {reply.get('error')}")
        # the board saw a short connection and may still be handling its end: no wait here, the
        # first ensure_link() retries until the board accepts the link (a condition, bounded)
        return reply["services"]

    # ---- link to the board ------------------------------------------------------------
    async def ensure_link(self) -> None:
        """Open the board-side connection on first use (the central is connected)."""
        async with self._lock:
            if self._link.is_open:
                return
            for _ in range(20):
                try:
                    reply = await self._link.open(self.entry["host"], self.entry["port"], self.mtu, 10)
                except (OSError, ValueError, asyncio.TimeoutError):
                    reply = {}
                if reply.get("op") == "connected":
                    self._link.start_receiving(self._lost)
                    return
                await self._link.close()
                await asyncio.sleep(0.1)  # retry pacing (bounded to 20 tries): the board is still ending the last link
            raise BleError("virtual board did not accept the link")

    def _on_notify(self, handle: int, data: bytes) -> None:
        ch = self.by_handle.get(handle)
        if ch is not None:
            ch.notify(data)

    async def _lost(self) -> None:
        self._link.fail_pending(BleError("link to the virtual board lost"))
        await self._link.close()

    async def drop_link(self) -> None:
        """The central went away: end the board-side connection (the board re-advertises).

        The GATT application is registered again so the next connection gets fresh
        attribute handles (BlueZoo 1.x keeps the previous connection's objects exported
        and would refuse to export them twice).
        """
        try:
            await self._link.close()
            for ch in self.by_handle.values():
                ch.notifying = False  # subscriptions end with the connection
            if self.bus is not None:
                await unregister(self.bus, self.adapter_path, app_path=APP_PATH)
                await register(self.bus, self.adapter_path, app_path=APP_PATH)
                # advertise afresh, as a board does after a disconnect: a central that forgot the
                # device (BlueZ drops devices that went out of range) sees it again
                await unregister(self.bus, self.adapter_path, adv_path=ADV_PATH)
                with contextlib.suppress(BleError):
                    await register(self.bus, self.adapter_path, adv_path=ADV_PATH)
        finally:
            self._dropping = None

    async def _request(self, req: dict[str, Any], want: bool = True) -> dict[str, Any]:
        await self.ensure_link()
        return await self._link.request(req, 10, want)

    async def read(self, handle: int) -> bytes:
        """GATT read relayed to the board."""
        return bytes.fromhex((await self._request({"op": "read", "handle": handle}))["data"])

    async def write(self, handle: int, data: bytes, response: bool) -> None:
        """GATT write relayed to the board."""
        await self._request({"op": "write", "handle": handle, "data": data.hex(), "rsp": True})

    async def stop(self) -> None:
        """Unregister and disconnect (idempotent)."""
        await self._link.close()
        if self._link.rx is not None:
            self._link.rx.cancel()
        if self.bus is not None:
            with contextlib.suppress(Exception):
                await unregister(self.bus, self.adapter_path, APP_PATH, ADV_PATH)
            self.bus.disconnect()
            self.bus = None
