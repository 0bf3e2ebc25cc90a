"""Stations page in line-CA mode (issue 19 §2): the operator ticks "Line CA: sign certificates here,
JITP", START ALL, and the tile turns PASS once the board is online as its own thing; the station
signs the certificate itself with the line's CA and holds no cloud client at all; the cloud's JITP
registered the certificate under the line's CA and created the thing at the board's first connect."""

from __future__ import annotations

import os

import pytest

from fleetdesk.boards.controller import StationController
from fleetdesk.boards.station import StationSettings
from fleetdesk.store.production import ProductionDB

pytestmark = [pytest.mark.gui, pytest.mark.slow, pytest.mark.timeout(240)]


def test_line_ca_mode_from_the_stations_page(qtbot, rig, bundle_dir, tmp_path, sandbox):
    from fleetdesk.boards.identity import CloudTarget
    from fleetdesk.boards.line_ca import LineCA
    from fleetdesk_gui.pages.stations import StationsPage

    admin = CloudTarget.from_sandbox(sandbox.state_dir)  # the admin machine's one-time registration
    ca = LineCA(tmp_path / "line-ca")
    ca.create()
    ca_id = ca.register(admin.iot, device=admin.device)

    rig.add(1, register=True, mac="24:6f:28:" + os.urandom(3).hex(":"))
    ctl = StationController(StationSettings(bundle=str(bundle_dir), online_timeout=90, line_ca_dir=str(ca.folder)),
                            db=ProductionDB(tmp_path / "prod.sqlite3"))  # no cloud given, none needed
    page = StationsPage(controller=ctl)
    qtbot.addWidget(page)
    page.identity.setChecked(False)
    page.line_ca.setChecked(True)  # the line CA implies an identity
    qtbot.waitUntil(lambda: len(page.tiles) == 1, timeout=5000)
    assert page.start_all() == 1
    assert not page.line_ca.isEnabled()  # locked while boards flash
    assert "signed by the line CA" in page.summary.text()
    assert ctl.station().cloud is None  # the station has no control-plane client: no AWS credentials used
    qtbot.waitUntil(lambda: not ctl.busy, timeout=200_000)
    page.refresh()
    (state,) = ctl.tiles.values()
    res = state.last_result
    assert res.result == "PASS", (res.error, res.console_tail[-5:])
    assert "JITP" in res.presence
    (tile,) = page.tiles.values()
    assert tile.result.text().startswith("PASS") and res.thing in tile.message.text()

    assert admin.iot.describe_thing(thingName=res.thing)["attributes"] == {"provisioned": "jitp"}
    principals = admin.iot.list_thing_principals(thingName=res.thing)["principals"]
    assert [p.rsplit("/", 1)[-1] for p in principals] == [res.certificate_id]
    desc = admin.iot.describe_certificate(certificateId=res.certificate_id)["certificateDescription"]
    assert desc["status"] == "ACTIVE" and desc["caCertificateId"] == ca_id
    page.close()
