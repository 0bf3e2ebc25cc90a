"""The dashboard as a user meets it, and the README's screenshots of it.

The app starts its own sandbox (as `fleetdesk gui` does), a small simulated fleet comes
online (six greenhouse sensors in two thing groups with attributes, one lab board that goes
away), a user opens one device, rolls out an OTA to three sensors, and looks at the fleet.
Each step asserts what the user would see; the PNGs go to $FLEETDESK_SCREENSHOTS (run with
FLEETDESK_SCREENSHOTS=docs/screenshots to refresh the README's fleet, device and jobs images).
"""

from __future__ import annotations

import asyncio
import math
import time

import numpy as np
import pytest

from gui_testutil import until

pytestmark = [pytest.mark.gui, pytest.mark.slow, pytest.mark.timeout(240)]

GROUPS = ("greenhouse-north", "greenhouse-south")


def _table(page) -> dict[str, list[str]]:
    proxy = page.proxy
    return {proxy.data(proxy.index(r, 0)): [proxy.data(proxy.index(r, c)) or "" for c in range(proxy.columnCount())]
            for r in range(proxy.rowCount())}


def test_dashboard_with_a_small_fleet(app_window, qloop, tmp_path, shot):
    import boto3

    from fleetdesk.config import Profile, Profiles
    from fleetdesk.fleet.otapkg import firmware_package
    from fleetdesk.virtual.fleet_sim import FleetRunner, provision_fleet
    from fleetdesk.store.telemetry import Sample
    from fleetdesk_gui.app import CloudController

    ctx, win = app_window
    ctx.set_profiles(Profiles(active="sandbox", items={"sandbox": Profile(state_dir=str(tmp_path / "sandbox"))}))
    controller = CloudController(ctx, port_base=0)
    runners: list[FleetRunner] = []

    async def scenario():
        await controller.apply()
        port = ctx.cloud.endpoint["mqtt_port"]
        assert win.status_label.text() == f"Profile sandbox · Sandbox — running, mqtt 127.0.0.1:{port}"
        await until(lambda: win.conn_label.text() == "Cloud: connected", 30, what="cloud connected")
        session = ctx.live.session
        fleet_page = win.show_page("Fleet")
        assert "No things in this profile yet" in fleet_page.empty_label.text()

        info = ctx.sandbox_info()
        sensors = await asyncio.to_thread(provision_fleet, info, 6, tmp_path / "fleet", prefix="greenhouse")
        lab = await asyncio.to_thread(provision_fleet, info, 1, tmp_path / "lab", prefix="lab-bench")
        iot = boto3.client("iot", **info.boto3_kwargs())
        for g in GROUPS:
            iot.create_thing_group(thingGroupName=g)
        for i, spec in enumerate(sensors):
            iot.update_thing(thingName=spec.thing, attributePayload={"attributes": {"bench": f"B{i + 1}", "crop": (
                "tomato", "basil", "pepper")[i % 3]}})
            iot.add_thing_to_thing_group(thingGroupName=GROUPS[i % 2], thingName=spec.thing)
        iot.update_thing(thingName=lab[0].thing, attributePayload={"attributes": {"bench": "lab"}})
        for specs, name in ((sensors, "sensors"), (lab, "lab")):
            runner = FleetRunner(specs, rate=1.0, processes=1, ramp=0.0, log_dir=tmp_path / f"logs-{name}")
            runner.start()
            runners.append(runner)
        names = [s.thing for s in sensors]
        fleet = session.fleet
        await until(lambda: all(n in fleet.things and fleet.things[n].online for n in names + [lab[0].thing]), 60,
                    what="7 devices online")
        fleet_page.reload_registry()  # the user presses "Reload registry": attributes and groups
        await until(lambda: _table(fleet_page).get(names[0], [""] * 9)[7] == GROUPS[0], 20, what="groups shown")
        assert "crop=tomato" in _table(fleet_page)[names[0]][8]

        # the lab board is unplugged: offline, with its last-seen time kept
        runners[1].stop()
        await until(lambda: fleet.things[lab[0].thing].online is False, 60, what="lab board offline")

        # Device page: a mistyped name is named as such, not shown as an empty device
        ctx.navigate.emit("Device", "greenhouse-0010")
        device = win.page("Device")
        assert device.info.text().startswith("greenhouse-0010: not a known thing of profile sandbox; check")
        # a day of history is on disk; the user turns the LED on from the form
        thing = names[1]
        now = time.time()
        history = [Sample(thing, float(t), 22 + 3 * math.sin(t / 400), 55 + 8 * math.cos(t / 700))
                   for t in np.arange(now - 900, now - 5, 3.0)]
        session.store.insert_many(history)
        ctx.navigate.emit("Device", thing)
        await until(lambda: device.shadow.version is not None, 30, what="shadow loaded")
        await until(lambda: thing in device.plot.keys() and len(device.plot.data(thing)[0]) >= len(history) + 3, 30,
                    what="history + live samples in the chart")
        device.plot.refresh()
        device.shadow.on_check.setChecked(True)
        assert device.shadow.send()
        await until(lambda: "The device reported the change (on)" in device.shadow.message.text(), 60,
                    what="the device applied on=true")
        assert device.info.text().startswith("online · firmware 1.0.0")
        shot(win, "device")

        # Jobs page: OTA 1.1.0 to the north greenhouse
        jobs = win.show_page("Jobs")
        pkg = tmp_path / "fw-1.1.0.pkg"
        pkg.write_bytes(firmware_package("1.1.0"))
        jobs.template_combo.setCurrentText("ota")
        jobs.use_firmware(str(pkg), "1.1.0")
        await until(lambda: "uploaded" in jobs.message.text(), 20, what="upload")
        north = [n for i, n in enumerate(names) if i % 2 == 0]
        jobs.open_target({"things": north})
        jobs.job_id_edit.setText("ota-1.1.0-north")
        assert not jobs.create_job()  # refused before asking the cloud, and said why
        assert "letters, digits" in jobs.message.text() and jobs.job_id_edit.text() == "ota-1.1.0-north"
        jobs.job_id_edit.setText("ota-1_1_0-north")
        assert jobs.create_job()
        await until(lambda: {s for s, _ in jobs.execution_status().values()} == {"SUCCEEDED"}
                    and len(jobs.execution_status()) == 3, 40, what="3 executions SUCCEEDED")
        await until(lambda: "(3): 3 succeeded" in jobs.exec_label.text(), 10, what="execution counts")
        await until(lambda: jobs.jobs_table.rowCount() == 1 and jobs.jobs_table.item(0, 4).text(), 10,
                    what="the job's completion time")
        assert [jobs.jobs_table.item(0, c).text() for c in range(3)] == ["ota-1_1_0-north", "COMPLETED", "3 succeeded"]
        assert jobs.jobs_table.item(0, 0).toolTip() == "ota-1_1_0-north (snapshot)"
        assert {g for g in (jobs.group_list.item(i).text() for i in range(jobs.group_list.count()))} >= set(GROUPS)
        shot(win, "jobs")

        # Fleet page: the whole fleet at a glance
        await until(lambda: all(fleet.things[n].firmware == "1.1.0" for n in north), 60, what="north on 1.1.0")
        fleet_page = win.show_page("Fleet")
        await until(lambda: all(_table(fleet_page)[n][3] == "1.1.0" for n in north), 10, what="firmware column")
        # (the updated sensors rebooted into 1.1.0: wait until they are back online)
        await until(lambda: fleet_page.summary.text().startswith("7 things · 6 online · 1 offline"), 60,
                    what="the summary after the OTA reboots")
        rows = _table(fleet_page)
        assert rows[lab[0].thing][1] == "offline" and rows[names[1]][1] == "online"
        assert not fleet_page.empty_label.isVisible()
        shot(win, "fleet")

    try:
        qloop.run_until_complete(asyncio.wait_for(scenario(), 220))
    finally:
        for r in runners:
            r.stop()
        qloop.run_until_complete(asyncio.wait_for(controller.shutdown(), 60))
