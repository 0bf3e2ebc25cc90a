"""The board's button under the MicroPython unix port (and CPython), driven through the hal's
GPIO channel: short press -> btnCount in the shadow + devices/<thing>/events, a bounce does
not count, held 3 s -> back to Config mode, advertising over BLE."""

from __future__ import annotations

import asyncio

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]


async def press(dev, seconds=0.2, **kw):
    return await asyncio.to_thread(dev.handle.press_button, seconds, **kw)


@pytest.mark.parametrize("interpreter", ["micropython", "cpython"])
async def test_short_press_counts_reports_and_publishes_an_event(cloud, device_factory, interpreter):
    dev = device_factory("btn1", interpreter=interpreter)
    await dev.wait_console("online as btn1")
    first = await cloud.expect("$aws/things/btn1/shadow/update", lambda d: "btnCount" in d["state"]["reported"])
    assert first["state"]["reported"]["btnCount"] == 0
    assert "button on GPIO0" in dev.console

    mark = cloud.mark()
    result = await press(dev)
    assert result == {"pin": 0, "seconds": 0.2, "listening": True}
    event = await cloud.expect("devices/btn1/events", since=mark)
    assert event["btnCount"] == 1 and event["on"] is False and event["refresh"] == 10000
    rep = await cloud.expect("$aws/things/btn1/shadow/update", since=mark)
    assert rep["state"]["reported"]["btnCount"] == 1
    assert rep["state"]["reported"]["firmware_version"] == "1.0.0"  # with the other reported keys

    await press(dev)
    assert (await cloud.expect("devices/btn1/events", lambda d: d["btnCount"] == 2, since=mark))["btnCount"] == 2
    assert dev.handle.boots == 1


async def test_a_bounce_shorter_than_the_debounce_does_not_count(cloud, device_factory):
    dev = device_factory("btn2")
    await dev.wait_console("button on GPIO0")
    await asyncio.to_thread(dev.handle.gpio.wait_listening, 10)
    mark = cloud.mark()
    for _ in range(3):  # contact chatter: down and up again at once
        dev.handle.gpio.set_pin(0, 0)
        dev.handle.gpio.set_pin(0, 1)
    await asyncio.sleep(1.0)  # a window in which no press may be reported
    assert "button: press" not in dev.console
    await press(dev)
    event = await cloud.expect("devices/btn2/events", since=mark)
    assert event["btnCount"] == 1


async def test_button_pin_from_config_and_a_desired_btncount_is_refused(cloud, device_factory):
    dev = device_factory("btn3", extra={"button_pin": 13})
    await dev.wait_console("online as btn3")
    assert "button on GPIO13" in dev.console
    mark = cloud.mark()
    assert (await press(dev))["pin"] == 13
    assert (await cloud.expect("devices/btn3/events", since=mark))["btnCount"] == 1
    # btnCount belongs to the device: desiring it is an error, not a reset of the counter
    await cloud.send("$aws/things/btn3/shadow/update/delta", {"state": {"btnCount": 0}, "version": 9})
    rep = await cloud.expect("$aws/things/btn3/shadow/update", lambda d: d["state"]["reported"].get("error"),
                             since=mark)
    assert "btnCount is reported by the device" in rep["state"]["reported"]["error"]


async def test_long_press_goes_back_to_config_mode_and_advertises(cloud, device_factory):
    from fleetdesk.ble.scanner import scan
    from fleetdesk.virtual.ble_link import VirtualBleakScanner

    dev = device_factory("btn4", mac="24:0a:c4:b7:b7:b7")
    await dev.wait_console("online as btn4")
    result = await press(dev, 3.5)
    assert result["listening"] is True
    await dev.wait_console("button held 3 s: back to Config mode (BLE provisioning)")
    await dev.wait_console("config: waiting for BLE provisioning", timeout=30)
    assert "button: press" not in dev.console  # a long press is not also a short one
    assert dev.handle.boots == 2 and dev.settings()["config_mode"] is True
    found = await scan(10, backend=VirtualBleakScanner, stop_when=lambda f: f.name == "FD-B7B7B7")
    board = [f for f in found if f.name == "FD-B7B7B7"]
    assert board and board[0].provisioned is True  # advertised state byte: it keeps its identity


async def test_esp8266_long_press_stays_online(cloud, device_factory):
    # CPython: an ESP8266's stock 38 KB heap cannot hold TLS + this firmware (firmware README)
    dev = device_factory("btn5", chip="esp8266", interpreter="cpython")
    await dev.wait_console("online as btn5")
    await press(dev, 3.3)
    await dev.wait_console("esp8266 has no Bluetooth, so no Config mode; staying online")
    await asyncio.sleep(0.5)  # a window for a reboot that must not happen
    assert dev.handle.boots == 1 and "config_mode" not in dev.settings()
