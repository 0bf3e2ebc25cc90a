"""BLE Setup page without a radio: what a field technician sees when moving from one board to
the next (the end-to-end run against a virtual board is tests/ble/test_gui_ble_setup.py)."""

from __future__ import annotations

import pytest
from bleak.backends.device import BLEDevice

from fleetdesk.ble.scanner import FoundDevice
from fleetdesk.config import Profiles
from fleetdesk_gui.context import AppContext
from fleetdesk_gui.pages.ble_setup import STEPS, BleSetupPage

pytestmark = [pytest.mark.gui, pytest.mark.timeout(60)]


def _board(address: str, name: str) -> FoundDevice:
    return FoundDevice(address=address, name=name, rssi=-60, provisioned=False, device=BLEDevice(address, name, None))


@pytest.fixture
def page(qtbot, qsettings):
    p = BleSetupPage(AppContext(Profiles(), qsettings))
    qtbot.addWidget(p)
    p.show()
    return p


def test_the_next_board_starts_from_step_one_and_the_done_one_is_marked(page):
    first, second = _board("24:0A:C4:00:00:01", "FD-000001"), _board("24:0A:C4:00:00:02", "FD-000002")
    page._found(first)  # what a scan reports, one board at a time
    page._found(second)
    assert not page.table.verticalHeader().isVisible()
    assert page.endpoint_label.text() == "from profile sandbox, filled in when you send"
    page.table.selectRow(0)
    assert page.thing_edit.text() == "fd-240ac40000ff"  # the station's name: fd-{base MAC}, BLE address - 2
    # the first board went through every step (as the step callbacks leave the page)
    page.pop_edit.setText("pop-of-board-1")
    page.thing_edit.setText("greenhouse-7")
    page.wifi_pass.setText("secret123")
    for step in STEPS:
        page._set_step(step, "done")
    for bar in page.bars.values():
        bar.setValue(100)
    page.endpoint_label.setText("127.0.0.1:8883")
    page.thing = "greenhouse-7"
    page._online({"firmware_version": "1.0.0"}, None)
    assert page.table.item(0, 3).text() == "✓ set up"
    assert page.table.item(0, 3).toolTip() == "online as greenhouse-7"
    assert "Pick the next board" in page.message.text()
    # the technician picks the next board: nothing of the first one may be sent to it
    page.table.selectRow(1)
    assert page.device_label.text().startswith("FD-000002")
    assert set(page.step_state.values()) == {"todo"}
    assert page.pop_edit.text() == "" and page.thing_edit.text() == "fd-240ac4000000"
    assert all(bar.value() == 0 for bar in page.bars.values())
    assert page.endpoint_label.text().startswith("from profile sandbox")
    assert page.message.text() == "" and not page.retry_button.isEnabled()
    assert page.wifi_pass.text() == "secret123", "the site's Wi-Fi should not have to be typed again"
    assert page.table.item(0, 3).text() == "✓ set up"


def test_the_board_list_is_locked_while_a_step_runs(page):
    page._found(_board("24:0A:C4:00:00:01", "FD-000001"))
    page._set_step("connect", "busy")
    assert not page.table.isEnabled() and not page.connect_button.isEnabled()
    page._set_step("connect", "done")
    assert page.table.isEnabled()


def test_scan_outcomes_say_what_to_do(page):
    from fleetdesk.errors import BleError

    page._scan_done(None, BleError("no Bluetooth adapter found", "plug in a Bluetooth adapter or turn it on"))
    assert page.scan_status.text() == ("Scan failed: no Bluetooth adapter found\n"
                                       "→ plug in a Bluetooth adapter or turn it on")
    assert page.scan_button.isEnabled()
    page._scan_done([], None)  # the sandbox profile scans virtual boards
    assert page.scan_status.text().startswith("No virtual board is advertising.")
    assert "firmware-only" in page.scan_status.text() and "Settings" in page.scan_status.text()
    page.ctx.profiles.items["sandbox"].bluetooth = "system"
    page._scan_done([], None)
    assert page.scan_status.text().startswith("No boards found.") and "Config mode" in page.scan_status.text()
    page._found(_board("24:0A:C4:00:00:01", "FD-000001"))
    page._scan_done([], None)
    assert page.scan_status.text() == "1 board(s) found"


def test_names_and_pop_are_the_ones_the_station_gives(page):
    """Issue 20 item 10: the thing name proposed is the station's (fd-<base MAC>, not fd-<last 3
    bytes>), and a board flashed without identity can be connected with its MAC as PoP."""
    page._found(_board("24:6F:28:F4:2E:3D", "FD-F42E3B"))
    page.table.selectRow(0)
    assert page.thing_edit.text() == "fd-246f28f42e3b"
    assert page.factory_pop_button.isVisibleTo(page)
    assert "246f28f42e3b" in page.factory_pop_button.toolTip()
    page.use_factory_pop()
    assert page.pop_edit.text() == "246f28f42e3b"
    assert "flashed without identity" in page.message.text()

