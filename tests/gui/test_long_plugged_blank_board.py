"""Issue 20 item 3: a blank board that sat plugged in boot-looping for a long time, flashed
firmware-only from the Stations page, is a PASS (it boots into Config mode), and its Details
and exported console.log show the boot after the flash, not the boot loop from before it."""

from __future__ import annotations

import time
import zipfile

import pytest

from fleetdesk.boards.controller import StationController
from fleetdesk.boards.station import StationSettings
from fleetdesk.store.production import ProductionDB

pytestmark = [pytest.mark.gui, pytest.mark.slow, pytest.mark.timeout(240)]


def _boot_loop_for_a_long_time(board, monkeypatch) -> None:
    """Minutes of a blank board's boot loop (the 64 KB console ring full of it), in seconds."""
    from fleetdesk.virtual import board as board_mod

    monkeypatch.setattr(board_mod, "BOOT_LOOP_PERIOD", 0.005)
    deadline = time.monotonic() + 60
    while len(board.console_text) < board_mod.CONSOLE_RING - 512:
        assert time.monotonic() < deadline, f"the blank board did not boot-loop: {board.console_text[-300:]!r}"
        time.sleep(0.05)
    monkeypatch.setattr(board_mod, "BOOT_LOOP_PERIOD", 1.0)
    assert "invalid header" in board.console_text


def test_firmware_only_flash_of_a_long_plugged_blank_board(qtbot, rig, bundle_dir, tmp_path, monkeypatch):
    from fleetdesk_gui.pages.stations import StationsPage

    (board,) = rig.add(1, register=True, throttle=True)  # as `fleetdesk boards virtual` runs them
    _boot_loop_for_a_long_time(board, monkeypatch)
    db = ProductionDB(tmp_path / "prod.sqlite3")
    ctl = StationController(StationSettings(bundle=str(bundle_dir), identity=False, wait_online=False, boot_wait=3.0),
                            db=db)
    page = StationsPage(controller=ctl)
    qtbot.addWidget(page)
    page.show()
    qtbot.waitUntil(lambda: len(page.tiles) == 1, timeout=5000)
    assert page.start_all() == 1
    qtbot.waitUntil(lambda: not ctl.busy, timeout=120_000)
    page.refresh()
    (tile_state,) = ctl.tiles.values()
    result = tile_state.last_result
    assert result.result == "PASS", (result.error, result.console_tail)
    console = "\n".join(result.console_tail)
    assert "invalid header" not in console, f"Details show the boot loop from before the flash:\n{console}"
    assert "MicroPython" in console or "Config mode" in console or "BLE" in console, console
    (tile,) = page.tiles.values()
    height = tile.height()
    tile.details_btn.setChecked(True)
    qtbot.waitUntil(tile.details_window.isVisible, timeout=3000)
    from PySide6.QtWidgets import QApplication

    QApplication.sendPostedEvents()  # a reflow would be a posted LayoutRequest: run every one of them now
    QApplication.processEvents()
    assert tile.details_window.isVisible() and tile.height() == height, "opening Details reflowed the tiles"
    assert "MicroPython" in tile.details.text() and "invalid header" not in tile.details.text()
    out = tmp_path / "export.zip"
    from fleetdesk.boards.export import export_attempt

    export_attempt(db, result.attempt_id, out)
    log = zipfile.ZipFile(out).read("console.log").decode()
    assert "invalid header" not in log and log.strip(), log
    page.close()
