"""Fleet page: the table model over the real FleetState, and the page against the sandbox
with simulated devices (online/offline, bulk desired change reaching the devices)."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from PySide6.QtCore import Qt

from fleetdesk.cloud.fleet_state import FleetState
from fleetdesk_gui.models.fleet_table import SORT_ROLE, FleetFilterProxy, FleetTableModel

from gui_testutil import until

pytestmark = [pytest.mark.gui, pytest.mark.timeout(180)]


def make_fleet(n: int) -> FleetState:
    fleet = FleetState()
    fleet.apply_registry([{"thingName": f"dev-{i:04d}", "attributes": {"site": "lab" if i % 2 else "line"}}
                          for i in range(n)])
    for i in range(n):
        fleet.set_groups(f"dev-{i:04d}", ["hall-a"] if i < n // 4 else ["hall-b"])
    fleet.take_changes()
    return fleet


def test_batched_updates_sort_filter_and_groups(qtbot):
    fleet = make_fleet(1000)
    model = FleetTableModel()
    proxy = FleetFilterProxy()
    proxy.setSourceModel(model)
    model.set_fleet(fleet)
    assert model.rowCount() == 1000
    signals = []
    model.dataChanged.connect(lambda a, b: signals.append((a.row(), b.row())))
    for i in range(1000):  # a burst: 1,000 messages
        fleet.apply_telemetry(f"dt/dev-{i:04d}/env", json.dumps({"temperature": 20 + i % 10, "humidity": 40, "seq": 1}))
    fleet.apply_telemetry("dt/dev-new/env", b'{"temperature": 30, "humidity": 10}')
    fleet.apply_telemetry("dt/dev-0001/env", b"not json")
    model.apply_changes(fleet.take_changes())
    assert len(signals) == 1, "one dataChanged per batch, not per message"
    assert model.rowCount() == 1001
    proxy.sort(5, Qt.DescendingOrder)  # temperature
    assert proxy.data(proxy.index(0, 0)) == "dev-new"
    assert proxy.data(proxy.index(0, 5)) == "30.0"
    proxy.set_group("hall-a")
    assert proxy.rowCount() == 250
    proxy.set_group("")
    proxy.set_text("lab")
    assert proxy.rowCount() == 500
    proxy.set_text("dev-000")
    assert sorted(proxy.names(range(proxy.rowCount()))) == [f"dev-{i:04d}" for i in range(10)]
    assert isinstance(model.data(model.index(0, 4), SORT_ROLE), float)
    assert fleet.summary()["malformed"] == 1


def _names_in_table(page, prefix):
    return {page.proxy.data(page.proxy.index(r, 0)): page.proxy.data(page.proxy.index(r, 1))
            for r in range(page.proxy.rowCount()) if page.proxy.data(page.proxy.index(r, 0)).startswith(prefix)}


@pytest.mark.slow
def test_fleet_page_follows_devices_and_bulk_sets_desired(app_window, cloud_session, sim_fleet, qloop):
    ctx, win = app_window
    page = win.show_page("Fleet")
    assert page.empty_label.isVisible() and page.empty_label.text().startswith("Not connected.")
    assert "Settings" in page.empty_label.text()
    ctx.live.attach(cloud_session)
    specs, runner = sim_fleet(3, "guifleet", rate=2)
    names = [s.thing for s in specs]

    async def scenario():
        await until(lambda: _names_in_table(page, "guifleet") == {n: "online" for n in names}, 60,
                    what="3 devices online in the table")
        await until(lambda: all(page.proxy.data(page.proxy.index(r, 5)) for r in range(page.proxy.rowCount())
                                if page.proxy.data(page.proxy.index(r, 0)) in names), 30, what="temperatures")
        fleet = cloud_session.fleet
        await until(lambda: all(fleet.things[n].firmware == "1.0.0" for n in names), 30,
                    what="firmware version from each shadow")
        page.filter_edit.setText("no-such-thing")
        assert page.proxy.rowCount() == 0
        assert page.empty_label.isVisible() and "No thing matches “no-such-thing”" in page.empty_label.text()
        page.filter_edit.setText("guifleet")
        assert not page.empty_label.isVisible()
        assert page.summary.text().startswith("3 shown · "), page.summary.text()
        page.table.selectAll()
        assert sorted(page.selected()) == names
        page.set_desired(names, "on", True)
        await until(lambda: all(fleet.things[n].reported.get("on") is True for n in names), 60,
                    what="devices reporting on=true")
        # The bulk result is posted once every UpdateThingShadow returned; a fast device may report first.
        await until(lambda: "desired.on: 3/3 things" in page.message.text(), 30, what="the bulk result message")
        runner.stop()
        await until(lambda: _names_in_table(page, "guifleet") == {n: "offline" for n in names}, 60,
                    what="3 devices offline in the table")
        assert "offline" in page.summary.text()

    qloop.run_until_complete(asyncio.wait_for(scenario(), 170))
    dlg = page.show_diagnostics()
    assert "telemetry" in dlg.counters.text()
    dlg.close()


@pytest.mark.slow
def test_fleet_page_reboot_start_job_and_double_click(app_window, cloud_session, sim_fleet, qloop, qtbot):
    """Reboot (selected rows) raises each thing's desired reboot counter in the cloud; Start job opens
    the Jobs form with exactly the selected things checked; double-clicking a row opens its Device page."""
    from PySide6.QtCore import QItemSelectionModel

    ctx, win = app_window
    page = win.show_page("Fleet")
    ctx.live.attach(cloud_session)
    specs, _runner = sim_fleet(3, "guiact", rate=2)
    names = sorted(s.thing for s in specs)

    def row_of(name):
        return next(r for r in range(page.proxy.rowCount()) if page.proxy.data(page.proxy.index(r, 0)) == name)

    def select(wanted):
        page.table.clearSelection()
        for n in wanted:
            page.table.selectionModel().select(page.proxy.index(row_of(n), 0),
                                               QItemSelectionModel.Select | QItemSelectionModel.Rows)

    async def scenario():
        await until(lambda: _names_in_table(page, "guiact") == {n: "online" for n in names}, 60,
                    what="3 devices online in the table")
        page.filter_edit.setText("guiact")
        fleet = cloud_session.fleet
        select(names[:2])
        assert sorted(page.selected()) == names[:2] and page.reboot_button.isEnabled()
        before = {n: fleet.things[n].desired.get("reboot", 0) for n in names}
        qtbot.mouseClick(page.reboot_button, Qt.LeftButton)
        await until(lambda: "reboot: 2/2 things" in page.message.text(), 30, what="the reboot result message")
        await until(lambda: all(fleet.things[n].desired.get("reboot") == before[n] + 1 for n in names[:2]), 30,
                    what="desired.reboot raised on the 2 selected things")
        assert fleet.things[names[2]].desired.get("reboot", 0) == before[names[2]], "an unselected thing was rebooted"

        select([names[0], names[2]])
        qtbot.mouseClick(page.job_button, Qt.LeftButton)
        assert win.current_title() == "Jobs"
        jobs = win.page("Jobs")
        assert sorted(jobs.checked(jobs.thing_list)) == [names[0], names[2]]

        fleet_page = win.show_page("Fleet")
        index = fleet_page.proxy.index(row_of(names[1]), 0)
        rect = fleet_page.table.visualRect(index)
        # a real double-click is press, release, then the double-click event (Qt's view needs the press)
        qtbot.mouseClick(fleet_page.table.viewport(), Qt.LeftButton, pos=rect.center())
        qtbot.mouseDClick(fleet_page.table.viewport(), Qt.LeftButton, pos=rect.center())
        assert win.current_title() == "Device"
        assert win.page("Device").thing == names[1]

    qloop.run_until_complete(asyncio.wait_for(scenario(), 170))
