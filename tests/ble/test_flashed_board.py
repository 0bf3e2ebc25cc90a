"""Done-means, the long way: the real esptool flashes a virtual ESP32 with the firmware bundle and
a /config.json holding only the PoP (no Wi-Fi, no cloud); it boots into Config mode, is found by
the scanner, provisioned over BLE from the CLI, commits, reboots and comes online in the sandbox."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid

import pytest
from ble_testlib import POP

from fleetdesk.boards import bundle
from fleetdesk.config import Profile, Profiles
from fleetdesk.virtual.host import BoardHost
from fleetdesk.virtual.spec import BoardSpec

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


def _wait(pred, timeout: float, what: str, board) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}:\n{board.console_text[-3000:]}"
        time.sleep(0.1)


def test_flashed_board_is_provisioned_over_ble(tmp_path, ble_registry, sandbox, monkeypatch):
    monkeypatch.setenv("FD_WIFI_NETWORKS", json.dumps({"fieldnet": "secret123"}))
    Profiles(active="sb", items={"sb": Profile(name="sb", kind="sandbox", state_dir=sandbox.state_dir)}).save()
    built = bundle.build_bundle(tmp_path / "bundle", chip="esp32")
    built = built.with_vfs_files({"/config.json": json.dumps({"pop": POP}).encode()})
    args = []
    for i, (offset, data) in enumerate(built.flash_args()):
        part = tmp_path / f"part{i}.bin"
        part.write_bytes(data)
        args += [hex(offset), str(part)]
    thing = f"ble-flash-{uuid.uuid4().hex[:6]}"
    with BoardHost() as host:
        board = host.start_board(BoardSpec(chip="esp32", name="ble-flash", mac="24:0a:c4:f1:f2:f3", throttle=False),
                                 tmp_path / "boards")
        out = subprocess.run([sys.executable, "-m", "esptool", "--port", board.url, "write-flash", *args],
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
        _wait(lambda: "waiting for BLE provisioning" in board.console_text, 60, "Config mode", board)
        scan = subprocess.run([sys.executable, "-m", "fleetdesk", "ble", "scan", "--virtual", "--json",
                               "--unprovisioned", "--timeout", "1.5"], capture_output=True, text=True, timeout=60)
        boards = [json.loads(line) for line in scan.stdout.splitlines()]
        assert [b["name"] for b in boards] == ["FD-F1F2F3"], scan.stderr
        pw = tmp_path / "wifi.txt"
        pw.write_text("secret123")
        prov = subprocess.run([sys.executable, "-m", "fleetdesk", "ble", "provision", boards[0]["address"],
                               "--pop", POP, "--wifi-ssid", "fieldnet", "--wifi-pass-file", str(pw),
                               "--create-thing", thing, "--virtual"], capture_output=True, text=True, timeout=90)
        assert prov.returncode == 0, prov.stdout + prov.stderr
        assert f"will reboot and connect as {thing}" in prov.stdout
        _wait(lambda: f"online as {thing}" in board.console_text, 60, "Normal mode online", board)
        from fleetdesk.ble.provision import wait_online

        reported = wait_online(Profiles.load().current, thing, timeout=30)
        assert reported["firmware_version"]
