"""Espressif's own client as the reference: esp_prov (vendored unmodified, tests/vendor/esp_prov)
provisions the test ESP-IDF peripheral over BlueZoo with security 0, 1 and 2 through bleak's real
BlueZ backend, and Fleetdesk's `ble espidf` CLI provisions the same peripheral.

Two things about BlueZoo the harness makes up for (both are how bluetoothd behaves and BlueZoo does not):
- bluetoothd reports a known device again on every discovery (each advertisement updates its RSSI);
  BlueZoo reports a device only when it creates its object. esp_prov discovers, then connects by
  address, and bleak's address lookup starts a second discovery that would never see the board:
  ``_rereport`` changes a property of the board's device object (Trusted, which nothing here reads)
  two BlueZoo scan ticks into each discovery, so BlueZoo signals it, as bluetoothd signals an RSSI
  update, after bleak registered its callback (bleak treats any Device1 change as an advertisement).
- esp_prov scans on bleak's default adapter, the first powered one in a Python set: with two
  BlueZoo adapters that depends on string hashing, so esp_prov runs with a PYTHONHASHSEED that puts
  hci0 (the laptop's radio) first. The board advertises on hci1.
"""

from __future__ import annotations

import asyncio
import functools
import os
import subprocess
import sys
from pathlib import Path

import pytest
from dbus_fast import BusType, Message, MessageType, Variant
from dbus_fast.aio import MessageBus
from espressif_files import ESP_PROV, IDF_PATH

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150)]
NETS = {"fieldnet": "secret123", "lab-2g": "labpass99"}
BOARD_NAME = "PROV_A1B2C3"
BOARD_ON_HCI0 = "/org/bluez/hci0/dev_24_0A_C4_A1_B2_C5"  # hci1's address as hci0 sees it (tests/ble/conftest.py)


@functools.cache
def _hci0_first_seed() -> str:
    """A PYTHONHASHSEED under which iterating {'/org/bluez/hci0', '/org/bluez/hci1'} yields hci0 first."""
    probe = "print(next(iter({'/org/bluez/hci0', '/org/bluez/hci1'})))"
    for seed in range(32):
        out = subprocess.run([sys.executable, "-c", probe], env=dict(os.environ, PYTHONHASHSEED=str(seed)),
                             capture_output=True, text=True, check=True).stdout.strip()
        if out == "/org/bluez/hci0":
            return str(seed)
    raise AssertionError("no PYTHONHASHSEED in 0..31 iterates hci0 first")


def _ticks(log: Path) -> int:
    return log.read_text(errors="replace").count("Scanning for devices on adapter[0]")


async def _second_tick_or_stop(log: Path, beyond: int, discovering: dict[str, bool], timeout: float = 10.0) -> bool:
    """True once BlueZoo scanned past tick ``beyond + 1`` of this discovery; False if the discovery ended first."""
    deadline = asyncio.get_running_loop().time() + timeout
    while _ticks(log) <= beyond + 1:
        if not discovering["on"]:
            return False
        assert asyncio.get_running_loop().time() < deadline, f"BlueZoo did not scan past tick {beyond + 1} on hci0"
        await asyncio.sleep(0.05)
    return discovering["on"]


async def _rereport(log: Path, stop: asyncio.Event) -> int:
    """While ``stop`` is unset: at each discovery hci0 starts, let BlueZoo scan twice, then flip the
    board's (unconnected) Trusted property so BlueZoo re-reports it. Returns how many it re-reported."""
    bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
    starts: asyncio.Queue[int] = asyncio.Queue()
    discovering = {"on": False}

    def on_message(msg: Message) -> None:
        if (msg.message_type == MessageType.SIGNAL and msg.member == "PropertiesChanged" and msg.path == "/org/bluez/hci0"
                and msg.body[0] == "org.bluez.Adapter1" and "Discovering" in msg.body[1]):
            discovering["on"] = msg.body[1]["Discovering"].value
            if discovering["on"]:
                starts.put_nowait(_ticks(log))

    bus.add_message_handler(on_message)
    await bus.call(Message(destination="org.freedesktop.DBus", path="/org/freedesktop/DBus",
                           interface="org.freedesktop.DBus", member="AddMatch", signature="s",
                           body=["type='signal',interface='org.freedesktop.DBus.Properties',path='/org/bluez/hci0'"]))
    nudged = 0
    try:
        while not stop.is_set():
            get = asyncio.ensure_future(starts.get())
            halt = asyncio.ensure_future(stop.wait())
            await asyncio.wait({get, halt}, return_when=asyncio.FIRST_COMPLETED)
            halt.cancel()
            if not get.done():
                get.cancel()
                break
            if not await _second_tick_or_stop(log, get.result(), discovering):
                continue  # a short discovery that found what it wanted
            connected = await bus.call(Message(destination="org.bluez", path=BOARD_ON_HCI0,
                                               interface="org.freedesktop.DBus.Properties", member="Get",
                                               signature="ss", body=["org.bluez.Device1", "Connected"]))
            if connected.message_type == MessageType.ERROR or connected.body[0].value:
                continue  # not seen yet (BlueZoo adds it this tick) or in use: leave it
            await bus.call(Message(destination="org.bluez", path=BOARD_ON_HCI0, interface="org.freedesktop.DBus.Properties",
                                   member="Set", signature="ssv",
                                   body=["org.bluez.Device1", "Trusted", Variant("b", nudged % 2 == 0)]))
            nudged += 1
    finally:
        bus.disconnect()
    return nudged


@pytest.fixture
async def board(bluezoo, tmp_path):
    """The ESP-IDF test peripheral on hci1 plus the re-report helper; yields a starter."""
    from espidf_peripheral import EspIdfPeripheral

    started: list[EspIdfPeripheral] = []
    stop = asyncio.Event()
    helper = asyncio.ensure_future(_rereport(tmp_path / "bluezoo.log", stop))

    async def start(security: int, pop: str) -> EspIdfPeripheral:
        dev = await EspIdfPeripheral(security=security, pop=pop, networks=NETS).start()
        started.append(dev)
        return dev

    yield start
    stop.set()
    await asyncio.wait_for(helper, 15)
    for dev in started:
        await dev.stop()


async def _run(*argv: str, env: dict[str, str] | None = None, cwd: Path | None = None,
               timeout: float = 120) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(*argv, stdin=subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT, env=env or dict(os.environ), cwd=cwd)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except asyncio.TimeoutError:
        proc.kill()
        out, _ = await proc.communicate()
        raise AssertionError(f"{argv[1]} did not finish within {timeout:.0f} s:\n{out.decode(errors='replace')}") from None
    return proc.returncode, out.decode(errors="replace")


@pytest.mark.parametrize("security,secret,args", [
    (0, "", []),
    (1, "abcd1234", ["--pop", "abcd1234"]),
    (2, "s3cr3t-pop", ["--sec2_username", "wifiprov", "--sec2_pwd", "s3cr3t-pop"]),
])
async def test_esp_prov_provisions_the_peripheral(board, security, secret, args):
    dev = await board(security, secret)
    env = dict(os.environ, IDF_PATH=str(IDF_PATH), PYTHONHASHSEED=_hci0_first_seed())
    rc, out = await _run(sys.executable, str(ESP_PROV), "--transport", "ble", "--service_name", "PROV_A1B2C3",
                         "--sec_ver", str(security), *args, "--custom_data", "hello fleet",
                         "--ssid", "fieldnet", "--passphrase", "secret123", env=env, cwd=ESP_PROV.parent)
    assert rc == 0, out
    assert "==== Session Established ====" in out, out
    assert "CustomData response: b'HELLO FLEET'" in out, out
    assert "==== Provisioning was successful ====" in out, out
    assert dev.proto.staged == (b"fieldnet", b"secret123")


async def test_esp_prov_wrong_pop_fails_the_session(board):
    dev = await board(1, "right-pop")
    env = dict(os.environ, IDF_PATH=str(IDF_PATH), PYTHONHASHSEED=_hci0_first_seed())
    rc, out = await _run(sys.executable, str(ESP_PROV), "--transport", "ble", "--service_name", "PROV_A1B2C3",
                         "--sec_ver", "1", "--pop", "wrong-pop", "--ssid", "fieldnet", "--passphrase", "secret123",
                         env=env, cwd=ESP_PROV.parent)
    assert "Failed to establish session" in out, out
    assert "Provisioning was successful" not in out
    assert dev.proto.staged is None


@pytest.mark.parametrize("security,pop", [(0, ""), (1, "abcd1234"), (2, "s3cr3t-pop")])
async def test_fleetdesk_ble_espidf_provisions_the_same_peripheral(board, tmp_path, security, pop):
    dev = await board(security, pop)
    secret = tmp_path / "wifi.pass"
    secret.write_text("secret123\n")
    rc, out = await _run(sys.executable, "-m", "fleetdesk", "ble", "espidf", "PROV_A1B2C3", "--adapter", "hci0",
                         "--pop", pop, "--wifi-ssid", "fieldnet", "--wifi-pass-file", str(secret))
    assert rc == 0, out
    assert f"security {security} session with PROV_A1B2C3" in out, out
    assert "fieldnet" in out and "lab-2g" in out, out  # the scan list
    assert "connected to fieldnet with IP 192.168.4.23" in out, out
    assert dev.proto.staged == (b"fieldnet", b"secret123")
