"""Issue 20 item 8: the window fits a 1366×768 and a 1024×768 screen: the first size leaves
the status bar on screen, BLE and Jobs columns read whole at 1024 px, the Set-desired dialog's
title is whole and it proposes valid values, and a missing libxcb-cursor0 says what to install."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QSize

from fleetdesk.config import Profiles
from fleetdesk.gui_command import missing_display_libraries
from fleetdesk_gui.app import build_window
from fleetdesk_gui.main_window import default_size

pytestmark = [pytest.mark.gui, pytest.mark.timeout(60)]


@pytest.mark.parametrize("work_area", [QSize(1366, 728), QSize(1024, 738), QSize(1920, 1040)])
def test_the_first_window_size_fits_the_screen(work_area):
    size = default_size(work_area)
    assert size.width() <= work_area.width() and size.height() + 30 <= work_area.height()  # + the title bar
    assert size.width() >= min(1024, work_area.width()) or work_area.width() < 1024


@pytest.fixture
def small_window(qtbot, qsettings):
    ctx, win = build_window(Profiles(), qsettings)
    qtbot.addWidget(win)
    win.resize(1024, 738)
    win.show()
    return ctx, win


def _columns_fit(table) -> bool:
    header = table.horizontalHeader()
    last = table.columnCount() - 1
    return header.sectionViewportPosition(last) + header.sectionSize(last) <= table.viewport().width() + 1


def test_ble_columns_read_whole_at_1024(small_window, qtbot):
    from bleak.backends.device import BLEDevice

    from fleetdesk.ble.scanner import FoundDevice

    ctx, win = small_window
    page = win.show_page("BLE Setup")
    page._found(FoundDevice(address="24:0A:C4:F4:2E:3D", name="FD-F42E3B", rssi=-61, provisioned=False,
                            device=BLEDevice("24:0A:C4:F4:2E:3D", "FD-F42E3B", None)))
    header = page.table.horizontalHeader()
    fm = page.table.fontMetrics()

    def read_whole():  # the header resizes its sections on a zero timer after the row lands
        for col in range(3):
            text = page.table.item(0, col).text()
            assert header.sectionSize(col) >= fm.horizontalAdvance(text), f"column {col} crushed: {text!r}"
        assert _columns_fit(page.table), "the last BLE column is off-screen at 1024 px"

    qtbot.waitUntil(read_whole, timeout=3000)  # raises the last AssertionError if it never holds


def test_jobs_columns_fit_at_1024(small_window, qtbot):
    from fleetdesk_gui.widgets.job_tables import fill_jobs

    ctx, win = small_window
    page = win.show_page("Jobs")
    import datetime

    now = datetime.datetime.now().astimezone()
    fill_jobs(page.jobs_table, [{"jobId": "ota-1_3_0-north-wing-second-floor", "status": "COMPLETED", "executions": "3 failed · 1 succeeded",
                                 "bad": True, "targetSelection": "SNAPSHOT", "createdAt": now, "completedAt": now}], None)
    assert page.jobs_table.item(0, 4).toolTip().startswith(now.strftime("%Y-%m-%d"))
    header, fm = page.jobs_table.horizontalHeader(), page.jobs_table.fontMetrics()

    def read_whole():  # the header resizes its sections on a zero timer after the rows land
        assert _columns_fit(page.jobs_table), "the Completed column is off-screen at 1024 px"
        for col in range(1, 5):  # the job id may be elided (whole in its tooltip); the rest reads whole
            text = page.jobs_table.item(0, col).text()
            assert header.sectionSize(col) >= fm.horizontalAdvance(text), f"column {col} crushed: {text!r}"

    qtbot.waitUntil(read_whole, timeout=3000)  # raises the last AssertionError if it never holds


def test_set_desired_dialog_is_whole_and_proposes_valid_values(qtbot):
    from PySide6.QtWidgets import QDialogButtonBox

    from fleetdesk_gui.widgets.desired_dialog import DesiredDialog

    dialog = DesiredDialog(3)
    qtbot.addWidget(dialog)
    dialog.show()
    assert dialog.windowTitle() == "Set desired"
    assert dialog.width() >= dialog.fontMetrics().horizontalAdvance("Set desired — Fleetdesk") + 120
    ok = dialog.buttons.button(QDialogButtonBox.Ok)
    dialog.key.setCurrentText("refresh")
    assert dialog.value.text() == "10000" and ok.isEnabled()
    dialog.value.setText("50")
    assert not ok.isEnabled() and "from 1000 to 3600000, not 50" in dialog.hint.text()
    dialog.key.setCurrentText("reboot")
    dialog.value.setText("1.5")
    assert not ok.isEnabled()
    dialog.value.setText("4")
    assert ok.isEnabled() and dialog.result_value() == ("reboot", 4)


def test_missing_xcb_cursor_says_what_to_install():
    env = {"DISPLAY": ":0"}
    text = missing_display_libraries(env, find=lambda name: None if name == "xcb-cursor" else name)
    assert "needs libxcb-cursor," in text and "apt-get install libxcb-cursor0`" in text
    text = missing_display_libraries(env, find=lambda name: None if name in ("xcb-cursor", "xcb-icccm") else name)
    assert "apt-get install libxcb-cursor0 libxcb-icccm4`" in text
    assert missing_display_libraries(env, find=lambda name: f"lib{name}.so.0") is None
    assert missing_display_libraries({"DISPLAY": ":0", "QT_QPA_PLATFORM": "offscreen"}, find=lambda n: None) is None
