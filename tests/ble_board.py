"""A board running the firmware's Config mode, waiting for BLE provisioning (``fresh_board``), and the
private BLE registry virtual boards advertise in (``ble_registry``): the BLE tests in tests/ble and the
BLE Setup page tests in tests/gui use them (each area's conftest imports the fixtures from here)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from ble_testlib import NETS, POP

from fleetdesk.config import Profile, Profiles
from fleetdesk.virtual.runtime import launch_firmware


@pytest.fixture
def ble_registry(tmp_path, monkeypatch) -> Path:
    reg = tmp_path / "ble-registry"
    reg.mkdir()
    monkeypatch.setenv("FLEETDESK_BLE_REGISTRY", str(reg))
    return reg


class Console:
    def __init__(self):
        self.buf = bytearray()
        self.lock = threading.Lock()

    def __call__(self, data: bytes) -> None:
        with self.lock:
            self.buf.extend(data)

    def text(self) -> str:
        with self.lock:
            return self.buf.decode(errors="replace")

    def wait(self, needle: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.text():
            assert time.monotonic() < deadline, f"console never showed {needle!r}:\n{self.text()[-3000:]}"
            time.sleep(0.1)


@pytest.fixture
def fresh_board(tmp_path, ble_registry, sandbox):
    """Firmware files + a config.json holding only the PoP (as flashed for BLE field setup)."""
    Profiles(active="sb", items={"sb": Profile(name="sb", kind="sandbox", state_dir=sandbox.state_dir)}).save()
    fs = tmp_path / "vfs"
    fs.mkdir()
    from fleetdesk.boards.bundle import firmware_files

    for path, data in firmware_files().items():  # as a bundle ships them (.mpy)
        (fs / path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        (fs / path.lstrip("/")).write_bytes(data)
    (fs / "config.json").write_text(json.dumps({"pop": POP, "product": "fd-sensor"}))
    console = Console()
    handle = launch_firmware(fs, mac="240ac4e1e2e3", chip="esp32", console=console,
                             env={"FLEETDESK_BLE_REGISTRY": str(ble_registry), "FD_WIFI_NETWORKS": json.dumps(NETS)})
    try:
        console.wait("waiting for BLE provisioning", 30)
        yield fs, console
    finally:
        handle.stop()


