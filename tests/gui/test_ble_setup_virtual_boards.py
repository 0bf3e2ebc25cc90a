"""BLE Setup finds virtual boards from the app, with no flag and no environment variable:
the sandbox profile's Bluetooth default is the virtual fleet, Settings can change it, and the
firmware advertises where the app scans even when the data dir is not ~/.local/share."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest
from gui_testutil import until

from fleetdesk.config import Profile, Profiles
from fleetdesk.virtual.runtime import launch_firmware
from fleetdesk_gui.context import AppContext
from fleetdesk_gui.pages.ble_setup import BleSetupPage

pytestmark = [pytest.mark.gui, pytest.mark.timeout(90)]


class _Console:
    def __init__(self) -> None:
        self.buf = bytearray()
        self.lock = threading.Lock()

    def __call__(self, data: bytes) -> None:
        with self.lock:
            self.buf.extend(data)

    def text(self) -> str:
        with self.lock:
            return self.buf.decode(errors="replace")


@pytest.fixture
def user_dirs(tmp_path, monkeypatch):
    """A user whose data dir is not ~/.local/share (XDG_DATA_HOME set, as on many desktops;
    macOS and Windows differ too) and who never heard of FLEETDESK_* variables."""
    for var in ("FLEETDESK_DATA_DIR", "FLEETDESK_BLE_REGISTRY", "FLEETDESK_BLE_BACKEND"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    return tmp_path


@pytest.fixture
def config_mode_board(user_dirs):
    """A virtual board's firmware booted with only its PoP in /config.json (Config mode)."""
    from fleetdesk.boards.bundle import firmware_files

    fs = user_dirs / "vfs"
    for name, data in firmware_files().items():  # the files a bundle's vfs holds (compiled, as flashed)
        (fs / name.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        (fs / name.lstrip("/")).write_bytes(data)
    (fs / "config.json").write_text(json.dumps({"pop": "pop-1234", "product": "fd-sensor"}))
    console = _Console()
    handle = launch_firmware(fs, mac="240ac4a0b0c0", chip="esp32", console=console)
    try:
        yield console
    finally:
        handle.stop()


def test_scan_lists_a_virtual_board_with_the_default_sandbox_profile(config_mode_board, qloop, qsettings):
    page = BleSetupPage(AppContext(Profiles(), qsettings))
    page.resize(1100, 700)
    page.show()
    assert "Bluetooth: virtual boards" in page.scan_status.text()

    async def scenario() -> None:
        await until(lambda: "waiting for BLE provisioning" in config_mode_board.text(), 30,
                    what=f"the board in Config mode (console: {config_mode_board.text()[-800:]!r})")
        page.start_scan()
        await until(lambda: page.table.rowCount() == 1, 15, what="the virtual board in the scan list")
        await until(lambda: page.scan_button.isEnabled(), 15, what="the scan to end")

    try:
        qloop.run_until_complete(asyncio.wait_for(scenario(), 60))
    finally:
        page.close()
    assert page.table.item(0, 0).text() == "FD-A0B0C0"
    assert page.table.item(0, 3).text() == "needs setup"
    assert page.scan_status.text() == "1 board(s) found"


def test_bluetooth_is_a_setting_of_the_profile(qtbot, qsettings):
    from fleetdesk_gui.app import build_window

    ctx, win = build_window(Profiles(), qsettings)
    qtbot.addWidget(win)
    win.show()
    settings = win.show_page("Settings")
    combo = settings.bluetooth_combo
    assert combo.currentData() == "" and "virtual boards for a sandbox" in combo.currentText()
    combo.setCurrentIndex(combo.findData("system"))
    assert settings.save(), settings.message.text()
    assert Profiles.load().current.bluetooth == "system"
    ble = win.show_page("BLE Setup")
    assert "Bluetooth: this computer's Bluetooth radio" in ble.scan_status.text()
    assert Profile(kind="aws").ble_backend == "system" and Profile().ble_backend == "virtual"
