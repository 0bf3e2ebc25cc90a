"""Stations page (pytest-qt, offscreen): tiles appear on plug-in, START ALL flashes every
board in parallel to PASS, settings lock while running, unplug shows on the tile."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fleetdesk.boards.controller import StationController
from fleetdesk.boards.station import StationSettings
from fleetdesk.store.production import ProductionDB

pytestmark = [pytest.mark.gui, pytest.mark.timeout(240)]


def _save(widget, name: str, tmp_path: Path) -> Path:
    out = Path(os.environ.get("FLEETDESK_SCREENSHOTS") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    path = out / name
    from window_grab import real_window_grab

    assert real_window_grab(widget).save(str(path))
    return path


def test_bad_bundle_is_shown_and_nothing_starts(qtbot, rig, tmp_path):
    from fleetdesk_gui.pages.stations import StationsPage

    rig.add(1, register=True)
    (tmp_path / "manifest.json").write_text("{not json")
    ctl = StationController(StationSettings(bundle=str(tmp_path), identity=False), db=ProductionDB(tmp_path / "p.db"))
    page = StationsPage(controller=ctl)
    qtbot.addWidget(page)
    qtbot.waitUntil(lambda: len(page.tiles) == 1, timeout=5000)
    assert page.start_all() == 0
    assert "not valid JSON" in page.status.text() and not page.locked
    page.close()


@pytest.mark.slow
def test_sixteen_slots_flash_at_once(qtbot, rig, bundle_dir, tmp_path):
    """A 16-slot station (labelled jig positions): START ALL flashes every board at once to
    PASS, settings stay locked while running, an unplugged board shows on its tile."""
    from fleetdesk_gui.pages.stations import StationsPage

    boards = rig.add(16, register=True)
    db = ProductionDB(tmp_path / "prod.sqlite3")
    ctl = StationController(StationSettings(bundle=str(bundle_dir), identity=False, wait_online=False,
                                            operator="line 2", boot_wait=0.5), db=db)
    page = StationsPage(controller=ctl)
    qtbot.addWidget(page)
    page.resize(1150, 1000)
    page.show()
    qtbot.waitUntil(lambda: len(page.tiles) == 16, timeout=5000)
    for i, b in enumerate(boards):
        slot = next(s for s, t in ctl.tiles.items() if t.port == b.url)
        ctl.set_label(slot, f"Jig A / {i + 1:02d}")
    ticks = []
    page._timer.timeout.connect(lambda: ticks.append(1))
    assert page.start_all() == 16
    assert not page.bundle.isEnabled()  # settings locked while running
    page.toggle_lock()
    assert page.locked and "locked" in page.status.text()
    shot = {}

    def done():
        if "mid" not in shot and sum(1 for t in ctl.tiles.values() if t.state == "PASS") >= 4:
            page.refresh()
            shot["mid"] = _save(page, "stations-16-slots-mid-flash.png", tmp_path)
        return not ctl.busy

    qtbot.waitUntil(done, timeout=200_000)
    page.refresh()
    assert [t.state for t in ctl.tiles.values()] == ["PASS"] * 16, [t.message for t in ctl.tiles.values()]
    for tile in page.tiles.values():
        assert tile.result.text().startswith("PASS")  # text, not colour alone
        assert tile.counters.text().startswith("✔ 1")
    assert "PASS 16" in page.totals.text()
    assert ticks  # the UI kept repainting while 16 boards flashed
    assert sorted(r["mac"] for r in db.attempts()) == sorted(b.spec.mac for b in boards)
    _save(page, "stations-16-slots-done.png", tmp_path)
    page.toggle_lock()
    assert not page.locked and page.bundle.isEnabled()

    # unplug one board: its tile says so and START is disabled; replug: ready again
    rig.call(boards[0].unplug())
    slot = next(s for s, t in ctl.tiles.items() if t.port == boards[0].url)
    qtbot.waitUntil(lambda: not ctl.tiles[slot].present, timeout=3000)
    qtbot.waitUntil(lambda: "unplugged" in page.tiles[slot].port.text(), timeout=3000)  # the next repaint
    assert not page.tiles[slot].start_btn.isEnabled()
    rig.call(boards[0].replug())
    qtbot.waitUntil(lambda: ctl.tiles[slot].present, timeout=3000)
    page.close()


@pytest.mark.slow
def test_gui_identity_flash_each_board_online(qtbot, rig, bundle_dir, tmp_path, sandbox):
    """From the Stations page: START ALL gives each board its own thing and certificate, and
    every tile turns PASS only once its board is online in the sandbox."""
    import os as _os

    from fleetdesk.boards.identity import CloudTarget
    from fleetdesk_gui.pages.stations import StationsPage

    macs = ["24:6f:28:" + ":".join(f"{b:02x}" for b in _os.urandom(3)) for _ in range(3)]
    for mac in macs:
        rig.add(1, register=True, mac=mac)
    cloud = CloudTarget.from_sandbox(sandbox.state_dir)
    ctl = StationController(StationSettings(bundle=str(bundle_dir), identity=True, online_timeout=90),
                            cloud=cloud, db=ProductionDB(tmp_path / "prod.sqlite3"))
    page = StationsPage(controller=ctl)
    qtbot.addWidget(page)
    page.identity.setChecked(True)
    qtbot.waitUntil(lambda: len(page.tiles) == 3, timeout=5000)
    assert page.start_all() == 3
    qtbot.waitUntil(lambda: not ctl.busy, timeout=200_000)
    page.refresh()
    results = [t.last_result for t in ctl.tiles.values()]
    assert [r.result for r in results] == ["PASS"] * 3, [(r.error, r.console_tail[-3:]) for r in results]
    assert len({r.thing for r in results}) == 3 and len({r.certificate_id for r in results}) == 3
    for r in results:
        assert cloud.connectivity(r.thing)["connected"]
    for tile in page.tiles.values():
        assert tile.result.text().startswith("PASS") and "online" in tile.message.text()
    page.close()
