"""BLE Setup → Batch…: a technician imports a sheet, starts, sees a row per board with its
state and reason, fixes the failed one, resumes, and exports the results (virtual boards with
the real firmware, the sandbox)."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from gui_testutil import until

from fleetdesk.config import Profile, Profiles
from fleetdesk_gui.context import AppContext
from fleetdesk_gui.pages.ble_setup import BleSetupPage

pytestmark = [pytest.mark.gui, pytest.mark.slow, pytest.mark.timeout(240)]


def _ble(mac: str) -> str:
    raw = bytearray(bytes.fromhex(mac))
    raw[5] = (raw[5] + 2) & 0xFF
    return ":".join(f"{b:02X}" for b in raw)


@pytest.fixture
def two_boards(tmp_path, monkeypatch, sandbox):
    from fleetdesk.boards.bundle import firmware_files
    from fleetdesk.virtual.runtime import launch_firmware, write_board_fs

    monkeypatch.setenv("FLEETDESK_BLE_REGISTRY", str(tmp_path / "registry"))
    Profiles(active="sb", items={"sb": Profile(name="sb", kind="sandbox", state_dir=sandbox.state_dir)}).save()
    handles, consoles, macs = [], [], ["240ac4d00101", "240ac4d00201"]
    for mac in macs:
        fs = write_board_fs(tmp_path / f"vfs-{mac}", firmware_files(), {"pop": f"pop-{mac}"})
        buf = bytearray()
        consoles.append(buf)
        handles.append(launch_firmware(fs, mac=mac, chip="esp32", console=buf.extend,
                                       env={"FD_WIFI_NETWORKS": json.dumps({"fieldnet": "secret123"})}))
    deadline = time.monotonic() + 60
    while not all(b"waiting for BLE provisioning" in bytes(c) for c in consoles):
        assert time.monotonic() < deadline, "boards not in Config mode"
        time.sleep(0.1)
    yield macs
    for h in handles:
        h.stop()


def test_batch_window_start_fail_resume_export(two_boards, qloop, qsettings, tmp_path):
    m0, m1 = two_boards
    page = BleSetupPage(AppContext(Profiles.load(), qsettings))
    page.show()
    dialog = page.open_batch()
    sheet = tmp_path / "sheet.csv"
    sheet.write_text("address,pop,wifi_ssid,wifi_password,thing\n"
                     f"{_ble(m0)},pop-{m0},fieldnet,secret123,\n"
                     f"{_ble(m1)},pop-{m1},fieldnet,wrong-password,\n")
    assert not dialog.start_button.isEnabled()
    assert dialog.import_sheet(str(sheet))
    assert dialog.table.rowCount() == 2 and dialog.table.item(0, 3).text() == "pending"
    assert dialog.start_button.isEnabled() and not dialog.resume_button.isEnabled()

    async def scenario():
        dialog.start()
        assert not dialog.import_button.isEnabled()
        await until(lambda: not dialog.running, 120, what="the batch to end")

    qloop.run_until_complete(asyncio.wait_for(scenario(), 150))
    assert dialog.table.item(0, 3).text() == "done" and dialog.table.item(0, 2).text() == f"fd-{m0}"
    assert dialog.table.item(1, 3).text() == "failed" and "wifi" in dialog.table.item(1, 4).text().lower()
    assert dialog.message.text().startswith("1 of 2 board(s) set up; 1 failed")
    assert dialog.resume_button.isEnabled() and not dialog.start_button.isEnabled()
    sheet.write_text(sheet.read_text().replace("wrong-password", "secret123"))  # the technician fixes line 3
    assert dialog.import_sheet(str(sheet))
    assert dialog.table.item(0, 3).text() == "done", "re-importing the fixed sheet forgot the done board"
    dialog.start_button.click()
    qloop.run_until_complete(asyncio.wait_for(until(lambda: not dialog.running, 120, what="resume"), 150))
    assert [dialog.table.item(i, 3).text() for i in range(2)] == ["done", "done"], dialog.table.item(1, 4).text()
    out = tmp_path / "results.csv"
    dialog.export(str(out))
    assert "secret123" not in out.read_text() and out.read_text().count("done") == 2
    dialog.close()
    page.close()
