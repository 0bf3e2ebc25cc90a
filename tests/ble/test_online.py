"""Done-means: a virtual board running the real firmware (unix port) with no Wi-Fi/cloud config
boots into Config mode, is found over BLE, gets Wi-Fi + endpoint + certificates from the CLI
(thing and cert created in the sandbox profile), commits, reboots into Normal mode and shows up
online in the sandbox. The same with the link dropped halfway through the key."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid

import boto3
import pytest
from ble_testlib import POP

from fleetdesk.ble.client import ProvisioningClient
from fleetdesk.ble.provision import cloud_target, provision
from fleetdesk.ble.scanner import scan
from fleetdesk.config import Profiles
from fleetdesk.virtual.ble_link import VirtualBleakClient, VirtualBleakScanner

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150)]


def _online(sandbox, thing: str, console) -> None:
    """The board says it is online, the sandbox sees it connected (presence) and holds the
    shadow it reported after connecting."""
    console.wait(f"online as {thing}", 60)
    data = boto3.client("iot-data", **sandbox.boto3_kwargs())
    iot = boto3.client("iot", **sandbox.boto3_kwargs())
    deadline = time.monotonic() + 30
    while True:
        try:
            doc = json.loads(data.get_thing_shadow(thingName=thing)["payload"].read())
            if doc.get("state", {}).get("reported", {}).get("firmware_version") and \
                    iot.get_thing_connectivity_data(thingName=thing).get("connected"):
                return
        except data.exceptions.ResourceNotFoundException:
            pass
        assert time.monotonic() < deadline, f"no reported shadow from {thing}:\n{console.text()[-2500:]}"
        time.sleep(0.3)


def test_cli_provisions_fresh_board_into_the_sandbox(fresh_board, sandbox, tmp_path):
    fs, console = fresh_board
    thing = f"ble-e2e-{uuid.uuid4().hex[:6]}"
    scan_out = subprocess.run([sys.executable, "-m", "fleetdesk", "ble", "scan", "--virtual", "--json", "--timeout", "1.5"],
                              capture_output=True, text=True, timeout=60)
    boards = [json.loads(line) for line in scan_out.stdout.splitlines()]
    assert [b["name"] for b in boards] == ["FD-E1E2E3"], scan_out.stderr
    assert boards[0]["provisioned"] is False
    pw = tmp_path / "wifi.txt"
    pw.write_text("secret123\n")
    out = subprocess.run([sys.executable, "-m", "fleetdesk", "ble", "provision", boards[0]["address"], "--pop", POP,
                          "--wifi-ssid", "fieldnet", "--wifi-pass-file", str(pw), "--create-thing", thing,
                          "--virtual", "--json", "--wait-online", "60"], capture_output=True, text=True, timeout=90)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert lines[-1]["ok"] is True and lines[-1]["thing"] == thing and lines[-1]["online"]
    assert {ln["progress"]["file"] for ln in lines if "progress" in ln} == {"ca", "cert", "key"}
    assert [ln["step"] for ln in lines if "step" in ln][-2:] == ["commit", "online"]
    _online(sandbox, thing, console)
    cfg = json.loads((fs / "config.json").read_text())
    assert cfg["thing_name"] == thing and cfg["pop"] == POP and cfg["product"] == "fd-sensor"


def test_dropped_link_halfway_still_comes_online(fresh_board, sandbox):
    fs, console = fresh_board
    thing = f"ble-drop-{uuid.uuid4().hex[:6]}"
    target = cloud_target(Profiles.load().current, thing, create=True)
    dropped = []

    async def run() -> None:
        found = await scan(5, backend=VirtualBleakScanner, stop_when=lambda f: f.name == "FD-E1E2E3")
        box = {}

        def progress(name, done, total):
            if name == "key" and not dropped and done >= total // 2:
                dropped.append(done)
                box["prov"].client._backend.simulate_link_loss()

        from fleetdesk.ble.client import ProvisioningClient

        prov = ProvisioningClient(found[0].device, POP, backend=VirtualBleakClient, mtu=128, progress=progress)
        box["prov"] = prov
        try:
            await provision(found[0].device, POP, "fieldnet", "secret123", target, client=prov)
        finally:
            await prov.close()
        assert prov.reconnects == 1

    asyncio.run(run())
    assert dropped
    _online(sandbox, thing, console)
    assert (fs / "certs" / "key.der").read_bytes() == target.key_der


def test_rpc_sends_a_provisioned_board_back_to_config_mode(fresh_board, sandbox):
    fs, console = fresh_board
    thing = f"ble-again-{uuid.uuid4().hex[:6]}"
    target = cloud_target(Profiles.load().current, thing, create=True)

    async def first() -> None:
        found = await scan(5, backend=VirtualBleakScanner, stop_when=lambda f: f.name == "FD-E1E2E3")
        await provision(found[0].device, POP, "fieldnet", "secret123", target, backend=VirtualBleakClient)

    asyncio.run(first())
    _online(sandbox, thing, console)
    data = boto3.client("iot-data", **sandbox.boto3_kwargs())
    data.publish(topic=f"{thing}/rpc", qos=1, payload=json.dumps({"id": 9, "method": "Sys.ConfigMode"}).encode())
    deadline = time.monotonic() + 40
    while console.text().count("waiting for BLE provisioning") < 2:
        assert time.monotonic() < deadline, console.text()[-3000:]
        time.sleep(0.1)

    async def back() -> None:
        found = await scan(5, backend=VirtualBleakScanner, stop_when=lambda f: f.name == "FD-E1E2E3")
        assert found[0].provisioned is True  # advertised state byte
        async with ProvisioningClient(found[0].device, POP, backend=VirtualBleakClient) as prov:
            assert (await prov.leave())["left"] is True

    asyncio.run(back())
    deadline = time.monotonic() + 40
    while console.text().count(f"online as {thing}") < 2:
        assert time.monotonic() < deadline, console.text()[-3000:]
        time.sleep(0.1)
    assert json.loads((fs / "settings.json").read_text())["config_mode"] is False
