"""Stations page in claim mode: the operator ticks "Claim certificate", START ALL, and the tile
turns PASS once the board provisioned itself by claim and is online as its own thing."""

from __future__ import annotations

import os

import pytest

from fleetdesk.boards.controller import StationController
from fleetdesk.boards.station import StationSettings
from fleetdesk.store.production import ProductionDB

pytestmark = [pytest.mark.gui, pytest.mark.slow, pytest.mark.timeout(240)]


def test_claim_mode_from_the_stations_page(qtbot, rig, bundle_dir, tmp_path, sandbox):
    from fleetdesk.boards.identity import CloudTarget
    from fleetdesk_gui.pages.stations import StationsPage

    mac = "24:6f:28:" + ":".join(f"{b:02x}" for b in os.urandom(3))
    rig.add(1, register=True, mac=mac)
    cloud = CloudTarget.from_sandbox(sandbox.state_dir)
    ctl = StationController(StationSettings(bundle=str(bundle_dir), online_timeout=90),
                            cloud=cloud, db=ProductionDB(tmp_path / "prod.sqlite3"))
    page = StationsPage(controller=ctl)
    qtbot.addWidget(page)
    page.identity.setChecked(False)
    page.claim.setChecked(True)  # claim implies an identity: no need to tick both
    qtbot.waitUntil(lambda: len(page.tiles) == 1, timeout=5000)
    assert page.start_all() == 1
    assert not page.claim.isEnabled()  # locked while boards flash
    qtbot.waitUntil(lambda: not ctl.busy, timeout=200_000)
    page.refresh()
    (state,) = ctl.tiles.values()
    res = state.last_result
    assert res.result == "PASS", (res.error, res.console_tail[-5:])
    principals = cloud.iot.list_thing_principals(thingName=res.thing)["principals"]
    assert [p.rsplit("/", 1)[-1] for p in principals] == [res.certificate_id]
    assert cloud.connectivity(res.thing)["connected"]
    (tile,) = page.tiles.values()
    assert tile.result.text().startswith("PASS") and res.thing in tile.message.text()
    page.close()
