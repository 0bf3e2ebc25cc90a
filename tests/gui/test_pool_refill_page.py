"""Stations page: "Refill pool" mints certificates for offline flashing in the background and
says how many are free; a cloud that does not answer is one clear line, nothing lost."""

from __future__ import annotations

import pytest

from fleetdesk.boards.certpool import CertPool
from fleetdesk.boards.controller import StationController
from fleetdesk.boards.station import StationSettings

pytestmark = [pytest.mark.gui, pytest.mark.timeout(180)]


def test_refill_pool_from_the_page(qtbot, sandbox, tmp_path):
    from fleetdesk_gui.pages.stations import StationsPage

    ctl = StationController(StationSettings(sandbox_state_dir=sandbox.state_dir, offline_pool=True),
                            lister=lambda: [])
    page = StationsPage(controller=ctl)
    qtbot.addWidget(page)
    assert CertPool().level() == 0
    page._refill_pool(3).join(120)
    qtbot.waitUntil(lambda: "refilled" in page.status.text(), timeout=5000)
    assert "3 added, 3 free" in page.status.text() and page.refill_btn.isEnabled()
    assert CertPool().level() == 3

    ctl.settings.sandbox_state_dir = str(tmp_path / "not-running")
    page._refill_pool(5).join(60)
    qtbot.waitUntil(lambda: "Could not refill" in page.status.text(), timeout=5000)
    assert "not running" in page.status.text() and CertPool().level() == 3
    page.close()
