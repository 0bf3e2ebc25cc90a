"""bleak's REAL BlueZ backend against BlueZoo (fake BlueZ on a private D-Bus): the board's
peripheral (firmware Config mode under the unix port) is put on BlueZoo's second adapter by
fleetdesk.virtual.ble_bluez; the laptop side scans, connects and provisions over hci0."""

from __future__ import annotations

import asyncio

import pytest
from ble_testlib import POP, wait_discovering

from fleetdesk.ble.certs import cert_der, key_der
from fleetdesk.ble.client import ProvisioningClient, ProvisioningError
from fleetdesk.ble.scanner import scan
from fleetdesk.virtual.ble_bluez import BluezPeripheralRelay
from fleetdesk.virtual.ble_link import advertisements

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]
HCI0 = {"bluez": {"adapter": "hci0"}}


async def _relay_and_find(dev, mtu: int):
    """Put the board on hci1 while hci0 scans (BlueZoo reports a device when its object appears)."""
    entry = next(e for e in advertisements() if e["address"] == dev.address)
    seen = asyncio.Event()
    box = {}

    def found(item):
        if item.address == dev.address:
            box["found"] = item
            seen.set()

    task = asyncio.create_task(scan(15, on_found=found, stop_when=lambda f: f.address == dev.address, **HCI0))
    await wait_discovering("hci0")
    relay = await BluezPeripheralRelay(entry, "hci1", mtu=mtu).start()
    try:
        await asyncio.wait_for(seen.wait(), 15)
        await task
    except BaseException:
        task.cancel()
        await relay.stop()
        raise
    return relay, box["found"]


async def test_provision_through_bluez(bluezoo, start_device, certs):
    dev = start_device()
    relay, found = await _relay_and_find(dev, 185)
    try:
        assert found.name == dev.name
        async with ProvisioningClient(found.device, POP, **HCI0) as prov:
            assert prov.client.backend_id == "bluez_dbus" and prov.mtu == 185
            assert [n["ssid"] for n in await prov.wifi_scan()] == ["fieldnet", "guest"]
            await prov.set_wifi("fieldnet", "secret123")
            await prov.set_cloud("localhost", 8883, "thing-bluez")
            prov.corrupt_next_chunk = True  # a bad CRC over BlueZ: refused and resent
            for name, data in (("ca", cert_der(certs.ca)), ("cert", cert_der(certs.cert)), ("key", key_der(certs.key))):
                await prov.send_file(name, data)
            assert (await prov.commit())["committed"] is True
        assert await asyncio.to_thread(dev.wait_exit, 15) == 0
        assert dev.config()["thing_name"] == "thing-bluez"
        assert (dev.fs / "certs" / "key.der").read_bytes() == key_der(certs.key)
    finally:
        await relay.stop()


async def _out_of_range(client, zoo) -> None:
    """The board vanishes mid-transfer: the link drops and BlueZ forgets the device object
    (as bluetoothd does for devices that stop advertising)."""
    from dbus_fast import BusType, Message
    from dbus_fast.aio import MessageBus

    path = client._backend._device_path
    await client.disconnect()
    bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
    try:
        await bus.call(Message(destination="org.bluez", path="/org/bluez/hci0", interface="org.bluez.Adapter1",
                               member="RemoveDevice", signature="o", body=[path]))
    finally:
        bus.disconnect()


# After the drop BlueZ has forgotten the device, so the client reconnects by address. bleak's own
# address lookup (find_device_by_filter) starts discovery before registering its callback and missed
# the device BlueZoo re-created at once as discovery started: the attempt then waited its full 20 s
# (1 run in 6 here). fleetdesk.ble.connect.find_by_address registers first (no rerun needed).
async def test_drop_halfway_resumes_through_bluez(bluezoo, start_device, certs):
    dev = start_device()
    relay, found = await _relay_and_find(dev, 64)
    key = key_der(certs.key)
    marks: dict[str, int] = {}
    box: list[ProvisioningClient] = []

    def progress(name, done, total):
        if name == "key" and "drop" not in marks and done >= total // 2:
            marks["drop"] = done
            asyncio.get_running_loop().create_task(_out_of_range(box[0].client, bluezoo))
        elif name == "key" and "drop" in marks and "resume" not in marks and box[0].reconnects:
            marks["resume"] = done

    try:
        prov = ProvisioningClient(found.device, POP, progress=progress, **HCI0)
        box.append(prov)
        try:
            await prov.connect()
            await prov.set_wifi("fieldnet", "secret123")
            await prov.set_cloud("localhost", 8883, "thing-drop")
            await prov.send_file("ca", cert_der(certs.ca))
            await prov.send_file("cert", cert_der(certs.cert))
            await prov.send_file("key", key)
            assert prov.reconnects >= 1
            assert marks["resume"] > marks["drop"] - 200, "resumed near the drop, not from zero"
            await prov.commit()
        finally:
            await prov.close()
        assert await asyncio.to_thread(dev.wait_exit, 15) == 0
        assert (dev.fs / "certs" / "key.der").read_bytes() == key
    finally:
        await relay.stop()


async def test_wrong_pop_through_bluez(bluezoo, start_device):
    dev = start_device()
    relay, found = await _relay_and_find(dev, 185)
    try:
        with pytest.raises(ProvisioningError, match="wrong proof-of-possession"):
            async with ProvisioningClient(found.device, "nope", **HCI0):
                pass
        assert dev.alive()
    finally:
        await relay.stop()
