"""The ESP-IDF unified provisioning client (fleetdesk.ble.espidf) against a test peripheral
built from ESP-IDF's protocomm/wifi_provisioning definitions, through BlueZoo with bleak's
real BlueZ backend: security 0/1/2, scan, set/apply/status, custom endpoint, wrong PoP."""

from __future__ import annotations

import asyncio

import pytest
from bleak import BleakScanner

from ble_testlib import wait_discovering

from fleetdesk.ble.espidf import ESP_SERVICE_UUID, EspProvClient, EspProvError

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]
NETS = {"fieldnet": "secret123", "lab-2g": "labpass99"}
HCI0 = {"bluez": {"adapter": "hci0"}}


@pytest.fixture
async def esp_device(bluezoo):
    from espidf_peripheral import EspIdfPeripheral

    started = []

    async def start(security: int, pop: str):
        seen = asyncio.Event()
        box = {}

        def detected(d, adv):
            box["dev"] = d
            seen.set()

        # scan first, then advertise: BlueZoo reports a device only when its object is created
        async with BleakScanner(detected, service_uuids=[ESP_SERVICE_UUID], **HCI0):
            await wait_discovering("hci0")
            dev = await EspIdfPeripheral(security=security, pop=pop, networks=NETS).start()
            started.append(dev)
            await asyncio.wait_for(seen.wait(), 15)
        assert box["dev"].name == "PROV_A1B2C3"
        return dev, box["dev"]

    yield start
    for dev in started:
        await dev.stop()


@pytest.mark.parametrize("security,pop", [(1, "abcd1234"), (2, "s3cr3t-pop"), (0, "")])
async def test_full_wifi_provisioning(esp_device, security, pop):
    dev, found = await esp_device(security, pop)
    async with EspProvClient(found, security=None, pop=pop, **HCI0) as esp:
        assert esp.security == security  # taken from proto-ver
        assert {"prov-session", "prov-config", "prov-scan", "proto-ver", "prov-ctrl", "custom-data"} <= set(esp.endpoints)
        nets = await esp.scan_wifi()
        assert [n["ssid"] for n in nets] == ["fieldnet", "lab-2g"] and nets[0]["rssi"] == -40
        assert await esp.wifi_status() == {"state": "disconnected"}
        await esp.set_wifi_config("fieldnet", "secret123")
        await esp.apply_wifi_config()
        status = await esp.wait_connected()
        assert status["state"] == "connected" and status["ssid"] == "fieldnet" and status["ip"] == "192.168.4.23"
        assert await esp.call("custom-data", b"hello fleet") == b"HELLO FLEET"
    assert dev.proto.staged == (b"fieldnet", b"secret123")


@pytest.mark.parametrize("security", [1, 2])
async def test_wrong_pop_is_refused(esp_device, security):
    dev, found = await esp_device(security, "right-pop")
    with pytest.raises(EspProvError, match="wrong proof-of-possession"):
        async with EspProvClient(found, security=security, pop="wrong-pop", **HCI0):
            pass
    assert dev.proto.staged is None


async def test_wrong_wifi_password_reports_auth_error(esp_device):
    _dev, found = await esp_device(2, "pop-2")
    async with EspProvClient(found, pop="pop-2", **HCI0) as esp:
        await esp.set_wifi_config("fieldnet", "not-it")
        await esp.apply_wifi_config()
        with pytest.raises(EspProvError, match="wrong password"):
            await esp.wait_connected()
        await esp.ctrl_reset()
        assert (await esp.wifi_status())["state"] == "disconnected"




async def test_cli_espidf_without_a_board_says_what_to_do(bluezoo):
    import sys

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "fleetdesk", "ble", "espidf", "PROV_NOPE", "--adapter", "hci0", "--scan-timeout", "2",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 1
    assert "no ESP-IDF provisioning board PROV_NOPE advertising" in err.decode()
    assert "provisioning mode" in err.decode()
