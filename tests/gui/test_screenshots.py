"""The dashboard as a user meets it, and the README's screenshots of it.

The app starts its own sandbox (as `fleetdesk gui` does), a small simulated fleet comes
online (six greenhouse sensors in two thing groups with attributes, one lab board that goes
away), a user opens one device, rolls out an OTA to three sensors, and looks at the fleet.
A second scene, in the same kind of window: a factory operator flashes eight virtual boards
firmware-only from Stations, a field technician finds them in BLE Setup and sets one up over BLE
into the sandbox, and Settings shows the profile.

Each step asserts what the user would see (run in every slow run, offscreen too); the PNGs go to
$FLEETDESK_SCREENSHOTS (or the test's tmp dir). Under a real X server (Xvfb 1366x768 + a window
manager, QT_QPA_PLATFORM=xcb) each shot is the maximized main window with its title bar, exactly
1366x768: run with FLEETDESK_SCREENSHOTS=docs/screenshots to refresh the README's pictures.
"""

from __future__ import annotations

import asyncio
import math
import time

import numpy as np
import pytest
from PySide6.QtCore import QSize

from gui_testutil import until

pytestmark = [pytest.mark.gui, pytest.mark.slow, pytest.mark.timeout(420)]

SCREEN = QSize(1366, 768)  # a laptop screen, the README pictures
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
        # (whole degrees and percent, as a DHT11 gives them, around what the simulated one reads now)
        history = [Sample(thing, float(t), round(20 + 2 * math.sin(t / 60)), round(54 + 3 * math.cos(t / 80)))
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


@pytest.fixture
def full_window(qapp, qsettings, qloop, monkeypatch):
    """The whole app as `fleetdesk gui` opens it (sidebar, pages, status bar) on its own sandbox,
    sized for a 1366×768 laptop screen (on a real X server the window manager maximizes it).

    The app's dirs are a new user's defaults (platformdirs under this test's own HOME), so the
    pages show paths as a user's ``~/...``, not the test run's temp dirs."""
    from fleetdesk.config import Profile, Profiles
    from fleetdesk_gui.app import CloudController, build_window

    for key in ("FLEETDESK_DATA_DIR", "FLEETDESK_CONFIG_DIR", "FLEETDESK_SANDBOX_DIR"):
        monkeypatch.delenv(key)

    ctx, win = build_window(Profiles(), qsettings)
    win.resize(SCREEN)
    win.show()
    ctx.set_profiles(Profiles(active="sandbox", items={"sandbox": Profile()}))
    controller = CloudController(ctx, port_base=0)
    try:
        yield ctx, win, controller
    finally:
        qloop.run_until_complete(asyncio.wait_for(controller.shutdown(), 60))
        ctx.live.detach()
        win.close()
        qapp.processEvents()
        win.deleteLater()
        qapp.processEvents()


def _window_shot(shot, win, name: str) -> None:
    """The README picture of the whole window; on a real X server exactly the 1366×768 screen."""
    from PySide6.QtGui import QGuiApplication, QImage

    path = shot(win, name)
    if QGuiApplication.platformName() == "xcb":
        size = QImage(path).size()
        assert (size.width(), size.height()) == (SCREEN.width(), SCREEN.height()), f"{name}.png is {size}"


def _visible_text(widget) -> str:
    """Every label, button, field and table cell the user can see on ``widget``, joined."""
    from PySide6.QtWidgets import QAbstractButton, QLabel, QLineEdit, QTableWidget

    parts = []
    for w in widget.findChildren(QLabel) + widget.findChildren(QAbstractButton) + widget.findChildren(QLineEdit):
        if w.isVisibleTo(widget):
            parts.append(w.text())
    for t in widget.findChildren(QTableWidget):
        parts += [t.item(r, c).text() for r in range(t.rowCount()) for c in range(t.columnCount()) if t.item(r, c)]
    return "\n".join(parts)


def test_station_ble_and_settings_in_the_window(full_window, rig, qloop, tmp_path, shot):
    """A factory operator flashes eight virtual boards firmware-only from the Stations page (the
    app's built-in firmware), the boards boot into Config mode and the field technician's BLE
    Setup page finds them; Settings shows the sandbox profile. One window, as a user has it."""
    ctx, win, controller = full_window
    boards = rig.add(8, register=True)
    macs = {b.spec.mac for b in boards}

    async def scenario():
        await controller.apply()
        await until(lambda: win.conn_label.text() == "Cloud: connected", 30, what="cloud connected")

        # Stations: the built-in firmware, firmware-only (no identity), operator "line 2"
        page = win.show_page("Stations")
        await until(lambda: len(page.tiles) == 8, 15, what="a tile per plugged-in board")
        slots = [next(s for s, t in page.controller.tiles.items() if t.port == b.url) for b in boards]
        for i, slot in enumerate(slots):  # the operator names the jig positions
            page.controller.set_label(slot, f"Jig A / {i + 1:02d}")
        page.form.use_builtin()
        await until(lambda: page.bundle.text() and "firmware" in page.bundle_info.text(), 120,
                    what="the built-in firmware built and described")
        assert page.bundle_info.text().startswith("esp32 · firmware "), page.bundle_info.text()
        page.identity.setChecked(False)
        page.operator.setText("line 2")
        first, rest = slots[:4], slots[4:]
        for slot in first:
            page._start(slot)  # the tile's START
        states = page.controller.tiles
        await until(lambda: all(states[s].state in ("PASS", "FAIL") for s in first), 120, what="4 boards flashed")
        assert [states[s].state for s in first] == ["PASS"] * 4, [states[s].message for s in first]
        for slot in rest:  # the jig's second row, while the first row shows PASS
            page._start(slot)
        await until(lambda: any(states[s].state == "running" and states[s].percent > 0 for s in rest), 60,
                    what="the other boards flashing")
        page.refresh()
        summary = page.summary.text()
        assert summary.startswith("Locked: Firmware ~/") and "no identity" in summary and "operator line 2" in summary
        assert "/tmp" not in _visible_text(page), "a temp path shows on the Stations page"
        for slot in first:
            assert page.tiles[slot].result.text().startswith("PASS")
        _window_shot(shot, win, "stations")
        await until(lambda: not page.controller.busy, 120, what="all eight boards done")
        page.refresh()
        assert [t.state for t in states.values()] == ["PASS"] * 8, [t.message for t in states.values()]
        assert "PASS 8" in page.totals.text()

        # BLE Setup: the eight boards, flashed without identity, advertise in Config mode
        ble = win.show_page("BLE Setup")
        assert "virtual boards" in ble.scan_status.text()  # a sandbox profile scans virtual boards
        ble.start_scan()
        await until(lambda: ble.table.rowCount() == 8 and ble.scan_button.isEnabled(), 30,
                    what="eight boards in the scan list")
        found = {ble.table.item(r, 0).text(): ble.table.item(r, 3).text() for r in range(8)}
        assert set(found.values()) == {"needs setup"}, found
        assert {n for n in found} == {"FD-" + m.replace(":", "")[-6:].upper() for m in macs}
        ble.table.selectRow(0)
        _window_shot(shot, win, "ble-setup-1-scan")
        # a PoP mistyped: refused by the board, said so, Retry offered
        ble.pop_edit.setText("not-the-pop")
        ble.connect_board()
        await until(lambda: ble.step_state["connect"] in ("done", "error"), 30, what="the PoP refused")
        assert ble.step_state["connect"] == "error" and "wrong proof-of-possession" in ble.message.text()
        assert ble.retry_button.isEnabled()
        _window_shot(shot, win, "ble-setup-2-wrong-pop")
        ble.use_factory_pop()  # flashed without identity: the board's MAC is its PoP
        ble.retry()
        await until(lambda: ble.step_state["connect"] in ("done", "error"), 30, what="connected over BLE")
        assert ble.step_state["connect"] == "done", ble.message.text()
        assert ble.ssid_combo.count() > 0, "the board's Wi-Fi scan is empty"
        ble.wifi_pass.setText("greenhouse-2026")
        ble.send_wifi()
        await until(lambda: ble.step_state["wifi"] in ("done", "error"), 30, what="Wi-Fi sent")
        assert ble.step_state["wifi"] == "done", ble.message.text()
        _window_shot(shot, win, "ble-setup-3-wifi")
        thing = ble.thing_edit.text()
        assert thing in {"fd-" + m.replace(":", "") for m in macs}, f"{thing}: not the name the station gives"
        ble.send_cloud_and_commit()
        await until(lambda: ble.step_state["commit"] in ("done", "error"), 60, what="certificates sent, committed")
        assert ble.step_state["commit"] == "done", ble.message.text()
        assert all(bar.value() == 100 for bar in ble.bars.values())
        _window_shot(shot, win, "ble-setup-4-commit")
        await until(lambda: ble.step_state["online"] in ("done", "error"), 90, what="the board online")
        assert ble.step_state["online"] == "done" and f"{thing} is online" in ble.message.text(), ble.message.text()
        assert set(ble.step_state.values()) == {"done"}, ble.step_state  # every step reads done, none busy
        assert ble.table.isEnabled() and ble.connect_button.isEnabled()  # "pick the next board" can be done
        assert ble.table.item(ble.table.currentRow(), 3).text() == "✓ set up"
        _window_shot(shot, win, "ble-setup-5-online")

        # Settings: the sandbox profile this window runs on
        settings = win.show_page("Settings")
        assert settings.kind_stack.currentIndex() == 0  # the sandbox form
        assert settings.state_dir_edit.placeholderText() == "~/.local/share/fleetdesk/sandbox"
        assert "/tmp" not in _visible_text(settings), "a temp path shows on the Settings page"
        _window_shot(shot, win, "settings")

    try:
        qloop.run_until_complete(asyncio.wait_for(scenario(), 400))
    finally:
        ble = win.page("BLE Setup")
        link = ble.prov.client if ble.prov is not None else None  # bleak's client, before close() drops it
        ble.close()  # submits the disconnect
        qloop.run_until_complete(until(lambda: link is None or not link.is_connected, 15, what="the BLE link closed"))
