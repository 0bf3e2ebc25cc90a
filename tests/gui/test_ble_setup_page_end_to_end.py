"""BLE Setup page (pytest-qt, offscreen) against a virtual board running the real firmware,
through the in-process bleak backend, into the sandbox: scan list -> wrong PoP (error + Retry)
-> connect -> Wi-Fi -> cloud + certificates -> commit -> online. Screenshots of each step go to
$FLEETDESK_SCREENSHOTS (or the test's tmp dir)."""

from __future__ import annotations

import asyncio
import os
import time
import uuid

import pytest
from ble_testlib import POP

pytestmark = [pytest.mark.gui, pytest.mark.slow, pytest.mark.timeout(180)]


async def _until(pred, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def test_ble_setup_page_end_to_end(fresh_board, sandbox, qloop, tmp_path, monkeypatch):
    from PySide6.QtCore import QSettings

    from fleetdesk.config import Profiles
    from fleetdesk_gui.context import AppContext
    from fleetdesk_gui.pages.ble_setup import BleSetupPage

    monkeypatch.setenv("FLEETDESK_BLE_BACKEND", "virtual")
    shots = os.environ.get("FLEETDESK_SCREENSHOTS") or str(tmp_path)
    os.makedirs(shots, exist_ok=True)
    fs, console = fresh_board
    ctx = AppContext(Profiles.load(), QSettings(str(tmp_path / "gui.ini"), QSettings.IniFormat))
    page = BleSetupPage(ctx)
    page.resize(1100, 720)
    page.show()
    thing = f"ble-gui-{uuid.uuid4().hex[:6]}"

    def shot(name: str) -> None:
        from window_grab import real_window_grab

        assert real_window_grab(page).save(os.path.join(shots, f"ble_setup_{name}.png"))

    async def scenario() -> None:
        page.start_scan()
        await _until(lambda: page.table.rowCount() == 1, 15, "the board in the scan list")
        assert page.table.item(0, 0).text() == "FD-E1E2E3"
        assert page.table.item(0, 3).text() == "needs setup" and "▮" in page.table.item(0, 2).text()
        await _until(lambda: page.scan_button.isEnabled(), 15, "scan end")
        page.table.selectRow(0)
        shot("1_scan")
        # wrong PoP: a clear error, Retry offered, nothing changed on the board
        page.pop_edit.setText("not-the-pop")
        page.connect_board()
        await _until(lambda: page.step_state["connect"] == "error", 20, "PoP refused")
        assert "wrong proof-of-possession" in page.message.text() and page.retry_button.isEnabled()
        shot("2_wrong_pop")
        page.pop_edit.setText(POP)
        page.retry()
        await _until(lambda: page.step_state["connect"] == "done", 20, "connected")
        assert [page.ssid_combo.itemText(i) for i in range(page.ssid_combo.count())] == ["fieldnet", "guest"]
        page.ssid_combo.setCurrentIndex(0)
        page.wifi_pass.setText("wrong")
        page.send_wifi()
        await _until(lambda: page.step_state["wifi"] == "error", 20, "bad Wi-Fi password reported")
        assert "wrong password" in page.message.text()
        page.wifi_pass.setText("secret123")
        page.retry()
        await _until(lambda: page.step_state["wifi"] == "done", 20, "Wi-Fi accepted")
        shot("3_wifi")
        page.thing_edit.setText(thing)
        page.send_cloud_and_commit()
        assert not page.provision_button.isEnabled() and not page.connect_button.isEnabled()  # busy
        await _until(lambda: page.step_state["commit"] in ("done", "error"), 60, "commit")
        assert page.step_state["commit"] == "done", page.message.text()
        assert all(bar.value() == 100 for bar in page.bars.values())
        shot("4_certificates_commit")
        await _until(lambda: page.step_state["online"] in ("done", "error"), 90, "online")
        assert page.step_state["online"] == "done", page.message.text()
        assert f"{thing} is online" in page.message.text()
        shot("5_online")

    try:
        qloop.run_until_complete(asyncio.wait_for(scenario(), 170))
    finally:
        link = page.prov.client if page.prov is not None else None  # bleak's client, before close() drops it
        page.close()  # submits the disconnect
        qloop.run_until_complete(_until(lambda: link is None or not link.is_connected, 15, "the BLE link closed"))
    assert f"online as {thing}" in console.text()
