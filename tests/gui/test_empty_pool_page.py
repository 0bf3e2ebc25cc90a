"""START ALL on the Stations page with an empty offline certificate pool is one clear stop (issue 10 §6):
no board starts, one message says the pool is empty and to refill it, and no FAIL row (no run, no
journal) is written for any board. The CLI's side is tests/boards/test_empty_pool.py."""

from __future__ import annotations

import pytest
from empty_pool import empty_pool, pipeline_runs  # noqa: F401  (fixture)

from fleetdesk.boards.controller import StationController
from fleetdesk.boards.station import StationSettings
from fleetdesk.store.production import ProductionDB

pytestmark = [pytest.mark.gui, pytest.mark.slow, pytest.mark.timeout(180)]


def test_start_all_with_an_empty_pool_is_one_clear_stop(qtbot, rig, bundle_dir, tmp_path, empty_pool):
    from fleetdesk_gui.pages.stations import StationsPage

    rig.add(3, register=True)
    db = ProductionDB(tmp_path / "prod.sqlite3")
    ctl = StationController(StationSettings(bundle=str(bundle_dir), identity=True, offline_pool=True),
                            cloud=empty_pool, db=db)
    page = StationsPage(controller=ctl)
    qtbot.addWidget(page)
    qtbot.waitUntil(lambda: len(page.tiles) == 3, timeout=5000)

    assert page.start_all() == 0  # not one board started
    page.refresh()
    assert page.status.text().count("offline certificate pool is empty") == 1, page.status.text()
    assert "refill" in page.status.text()  # and what to do about it
    assert not ctl.busy and "certificate pool 0" in page.totals.text() and "FAIL 0" in page.totals.text()
    for slot, state in ctl.tiles.items():
        assert state.state == "idle" and state.failed == 0 and state.last_result is None
        assert not page.tiles[slot].result.text().startswith("FAIL")
    page.tiles[next(iter(page.tiles))].start_btn.click()  # a single START stops the same way
    assert not ctl.busy and "pool is empty" in page.status.text()
    assert db.attempts() == [] and pipeline_runs(db.path) == 0
    page.close()
