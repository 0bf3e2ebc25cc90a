"""Stations page: a board whose identity is on file but missing on the board is offered a restore
on its tile (amber, two buttons), and "Restore identity" brings the same certificate back."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fleetdesk.boards.controller import StationController
from fleetdesk.boards.station import StationSettings
from fleetdesk.store.production import ProductionDB

pytestmark = [pytest.mark.gui, pytest.mark.slow, pytest.mark.timeout(300)]


def _save(widget, name: str, tmp_path: Path) -> Path:
    out = Path(os.environ.get("FLEETDESK_SCREENSHOTS") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    path = out / name
    assert widget.grab().save(str(path))
    return path


def test_tile_offers_restore_then_restores_the_same_identity(qtbot, rig, bundle_dir, tmp_path, sandbox):
    from fleetdesk.boards.identity import CloudTarget
    from fleetdesk_gui.pages.stations import StationsPage

    (board,) = rig.add(1, register=True, mac="24:6f:28:" + ":".join(f"{b:02x}" for b in os.urandom(3)))
    cloud = CloudTarget.from_sandbox(sandbox.state_dir)
    ctl = StationController(StationSettings(bundle=str(bundle_dir), identity=True, online_timeout=90),
                            cloud=cloud, db=ProductionDB(tmp_path / "prod.sqlite3"))
    page = StationsPage(controller=ctl)
    qtbot.addWidget(page)
    page.identity.setChecked(True)
    qtbot.waitUntil(lambda: len(page.tiles) == 1, timeout=5000)
    (slot,) = page.tiles
    tile = page.tiles[slot]
    assert page.start_all() == 1
    qtbot.waitUntil(lambda: not ctl.busy, timeout=200_000)
    first = ctl.tiles[slot].last_result
    assert first.result == "PASS", first.error
    assert not tile.restore_btn.isVisibleTo(page)

    vfs = ctl.station().plan.partition("vfs")
    rig.call(board.unplug())
    board.flash.erase(vfs.offset, vfs.size)  # the board's filesystem is gone
    rig.call(board.replug())
    qtbot.waitUntil(lambda: ctl.tiles[slot].present, timeout=5000)
    assert ctl.start(slot)
    qtbot.waitUntil(lambda: not ctl.busy, timeout=200_000)
    page.refresh()
    state = ctl.tiles[slot]
    assert state.state == "HOLD" and state.failed == 0, state.message
    assert tile.result.text() == "IDENTITY MISSING"
    assert "Restore identity" in tile.message.text()
    assert tile.restore_btn.isVisibleTo(page) and tile.new_btn.isVisibleTo(page)
    _save(page, "station-restore-offered.png", tmp_path)

    tile.restore_btn.click()
    qtbot.waitUntil(lambda: ctl.busy, timeout=5000)
    qtbot.waitUntil(lambda: not ctl.busy, timeout=200_000)
    page.refresh()
    again = ctl.tiles[slot].last_result
    assert again.result == "PASS" and again.restored, again.error
    assert (again.thing, again.certificate_id) == (first.thing, first.certificate_id)
    assert tile.result.text().startswith("PASS") and not tile.restore_btn.isVisibleTo(page)
    assert cloud.connectivity(first.thing)["connected"]
    page.close()
