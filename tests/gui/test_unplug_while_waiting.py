"""Issue 20 item 4: a board unplugged while the station waits for it to come online fails at
once with that reason (not 60 s later as "check Wi-Fi credentials"); the wait counts down on
the tile; times in Details read as clock times; re-plugging keeps the reason on the tile."""

from __future__ import annotations

import dataclasses
import re

import pytest

from fleetdesk.boards.controller import StationController
from fleetdesk.boards.station import StationSettings
from fleetdesk.cloud.backend import CloudTarget
from fleetdesk.store.production import ProductionDB

pytestmark = [pytest.mark.gui, pytest.mark.slow, pytest.mark.timeout(240)]


def _page(qtbot, rig, bundle_dir, tmp_path, sandbox, online_timeout):
    from fleetdesk_gui.pages.stations import StationsPage

    (board,) = rig.add(1, register=True)
    # the board gets an MQTT port nobody listens on: it boots and keeps trying, never online
    cloud = dataclasses.replace(CloudTarget.from_sandbox(sandbox.state_dir), port=1)
    ctl = StationController(StationSettings(bundle=str(bundle_dir), identity=True, online_timeout=online_timeout),
                            cloud=cloud, db=ProductionDB(tmp_path / "prod.sqlite3"))
    page = StationsPage(controller=ctl)
    qtbot.addWidget(page)
    page.show()
    qtbot.waitUntil(lambda: len(page.tiles) == 1, timeout=5000)
    (slot,) = ctl.tiles
    return board, ctl, page, slot


def test_unplugged_while_waiting_fails_at_once_and_says_so(qtbot, rig, bundle_dir, tmp_path, sandbox):
    board, ctl, page, slot = _page(qtbot, rig, bundle_dir, tmp_path, sandbox, online_timeout=90)
    tile = ctl.tiles[slot]
    assert page.start_all() == 1
    qtbot.waitUntil(lambda: tile.waiting_s is not None, timeout=120_000)
    page.refresh()
    shown = page.tiles[slot].result.text()
    assert re.fullmatch(r"Waiting for cloud… \d+ s left", shown), shown
    left = tile.waiting_s
    qtbot.waitUntil(lambda: tile.waiting_s is not None and tile.waiting_s < left, timeout=5000)  # it counts down
    rig.call(board.unplug())
    qtbot.waitUntil(lambda: not ctl.busy, timeout=30_000)  # well before the 90 s timeout
    page.refresh()
    result = tile.last_result
    assert result.result == "FAIL"
    assert "unplugged while waiting" in result.error, result.error
    assert tile.message.startswith("The board was unplugged before it came online"), tile.message
    assert "Wi-Fi" not in tile.message
    rig.call(board.replug())
    qtbot.waitUntil(lambda: tile.present, timeout=5000)
    page.refresh()
    assert tile.message.startswith("The board was unplugged before it came online"), "re-plugging wiped the reason"
    assert page.tiles[slot].start_btn.isEnabled()
    page.close()


def test_not_online_reason_shows_clock_times(qtbot, rig, bundle_dir, tmp_path, sandbox):
    board, ctl, page, slot = _page(qtbot, rig, bundle_dir, tmp_path, sandbox, online_timeout=4)
    assert page.start_all() == 1
    qtbot.waitUntil(lambda: not ctl.busy, timeout=120_000)
    error = ctl.tiles[slot].last_result.error
    assert "did not come online" in error, error
    assert re.search(r"flashed at \d\d:\d\d:\d\d\)", error), error
    assert not re.search(r"\d{12,}", error), f"an epoch number in the reason: {error}"
    assert any("flashed at" in line and not re.search(r"\d{12,}", line) for line in ctl.tiles[slot].details)
    page.close()
