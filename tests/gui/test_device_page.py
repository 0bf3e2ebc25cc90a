"""Device page: desired-JSON validation, shadow editor, and the page against the sandbox with a
simulated device (live chart + export, desired change reported back, 409, RPC, log stream)."""

from __future__ import annotations

import asyncio
import csv
import json
import math
import time

import numpy as np

import pytest

from fleetdesk.store.telemetry import Sample
from fleetdesk_gui.widgets.shadow_editor import JsonProblem, ShadowEditor, delta_of, parse_desired

from gui_testutil import until

pytestmark = [pytest.mark.gui, pytest.mark.timeout(240)]


def test_parse_desired_names_the_error_position():
    with pytest.raises(JsonProblem) as e:
        parse_desired('{\n  "on": tru\n}')
    assert str(e.value).startswith("line 2, column 9")
    assert e.value.position == 10
    with pytest.raises(JsonProblem, match="must be a JSON object"):
        parse_desired("[1, 2]")
    with pytest.raises(JsonProblem, match="deeper than 6"):
        parse_desired(json.dumps({"a": {"b": {"c": {"d": {"e": {"f": {"g": 1}}}}}}}))
    with pytest.raises(JsonProblem, match="8 KB"):
        parse_desired(json.dumps({"blob": "x" * 9000}))
    assert parse_desired('{"refresh": 2000}') == {"refresh": 2000}


def test_delta_is_desired_leaves_that_differ():
    assert delta_of({"on": True, "refresh": 5000, "cfg": {"a": 1, "b": 2}},
                    {"on": True, "refresh": 1000, "cfg": {"a": 1, "b": 3}}) == {"refresh": 5000, "cfg": {"b": 2}}


def test_editor_refuses_bad_json_and_sends_only_changed_form_keys(qtbot):
    ed = ShadowEditor()
    qtbot.addWidget(ed)
    doc = {"state": {"reported": {"on": False, "refresh": 10000, "reboot": 0, "firmware_version": "1.0.0"}},
           "metadata": {"reported": {"on": {"timestamp": 1700000000}}}, "version": 7}
    ed.set_document(doc)
    assert ed.version_label.text().startswith("version 7")
    assert ed.tree.topLevelItemCount() == 4
    assert [ed.tree.topLevelItem(i).text(0) for i in range(4)] == ["firmware_version", "on", "reboot", "refresh"]
    assert ed.tree.topLevelItem(1).text(4).startswith("2023-11-")
    sent = []
    ed.send_requested.connect(lambda d, v, b: sent.append((d, v, b["version"])))
    assert not ed.send()  # nothing changed
    ed.on_check.setChecked(True)
    assert ed.send()
    assert sent == [({"on": True}, 7, 7)]
    ed.sent({"on": True})  # accepted: waiting for the device (no report yet in version 8)
    ed.set_document({**doc, "state": {**doc["state"], "desired": {"on": True}}, "version": 8})
    assert "reported" not in ed.message.text()
    row = ed.tree.topLevelItem(1)
    assert (row.text(0), row.text(1), row.text(2), row.text(3)) == ("on", "true", "false", "true")
    ed.tabs.setCurrentIndex(1)
    ed.raw_edit.setPlainText('{"refresh": 2000,}')
    assert not ed.send()
    assert "Not sent: line 1, column 18" in ed.message.text()
    assert ed.raw_edit.textCursor().selectionStart() == 17
    assert len(sent) == 1


@pytest.mark.slow
def test_device_page_live_chart_shadow_409_rpc_log(app_window, cloud_session, sim_fleet, qloop, tmp_path):
    ctx, win = app_window
    ctx.live.attach(cloud_session)
    specs, runner = sim_fleet(1, "guidev", rate=5)
    thing = specs[0].thing
    page = win.show_page("Device")
    fleet = cloud_session.fleet

    async def scenario():
        await until(lambda: thing in fleet.things and fleet.things[thing].online, 60, what="device online")
        # stored history (10 min, offline for 2 of them) is loaded when the page opens
        now = time.time()
        history = [Sample(thing, float(t), 21 + 2 * math.sin(t / 60), 50 + 5 * math.cos(t / 90))
                   for t in np.arange(now - 600, now - 20, 2.0) if not now - 300 < t < now - 180]
        cloud_session.store.insert_many(history)
        ctx.navigate.emit("Device", thing)
        assert page.thing == thing and win.current_title() == "Device"
        await until(lambda: page.shadow.version is not None, 30, what="shadow loaded")
        await until(lambda: thing in page.plot.keys() and len(page.plot.data(thing)[0]) >= 5, 30,
                    what="live points in the chart")
        await until(lambda: page.plot.frames > 0, 10, what="chart redraw")
        await until(lambda: len(page.plot.data(thing)[0]) >= len(history) + 5, 30, what="history + live in the chart")
        page.plot.refresh()
        assert np.isnan(page.plot.series(thing).curves[0].yData).any(), "the offline stretch is not a gap"
        # export the visible range
        out = tmp_path / "export.csv"
        page.export(out, "csv")
        await until(lambda: page.exports == 1, 10, what="export")
        rows = list(csv.DictReader(out.open()))
        first = float(rows[0]["ts"])
        stored = [r for r in rows if float(r["ts"]) <= history[-1].ts + 0.001]
        assert len(stored) == sum(1 for h in history if h.ts >= first - 0.001), "history missing from the export"
        assert len(rows) - len(stored) >= 5, "live samples missing from the export"
        assert rows[0]["thing"] == thing and float(rows[0]["temperature"]) > 0
        # desired on/refresh from the form reaches the device and comes back as reported
        page.shadow.on_check.setChecked(True)
        page.shadow.refresh_spin.setValue(3000)
        assert page.shadow.send()
        await until(lambda: (fleet.things[thing].reported.get("on") is True
                             and fleet.things[thing].reported.get("refresh") == 3000), 60, what="reported on/refresh")
        tree = page.shadow.tree
        await until(lambda: ["true"] == [tree.topLevelItem(i).text(2) for i in range(tree.topLevelItemCount())
                                         if tree.topLevelItem(i).text(0) == "on"],
                    30, what="reported column shows on=true")
        await until(lambda: "The device reported the change (on, refresh)" in page.shadow.message.text(), 30,
                    what="the editor saying the device applied the change")
        # 409: someone else changes the shadow while the user edits
        await until(lambda: not page.shadow.dirty, 10, what="first send accepted")
        stale = page.shadow.version
        page.shadow.tabs.setCurrentIndex(1)
        page.shadow.raw_edit.setPlainText('{"refresh": 2500}')
        await cloud_session.shadows.update(thing, desired={"refresh": 4000})
        await until(lambda: page.shadow.version > stale, 10, what="live update of the shown version")
        assert page.shadow.raw_edit.toPlainText() == '{"refresh": 2500}', "a live update replaced the user's edit"
        assert page.shadow.send()
        await until(lambda: "Changed since your edit" in page.shadow.message.text(), 30, what="409 shown")
        assert "desired.refresh" in page.shadow.message.text()
        assert page.shadow.version > stale, "the editor did not reload the current document"
        assert page.shadow.raw_edit.toPlainText() == '{"refresh": 2500}', "the user's edit was lost"
        # RPC
        page.tabs.setCurrentIndex(1)
        page.rpc_method.setCurrentText("Sys.GetInfo")
        page.call_rpc()
        await until(lambda: "fleetdesk-fw" in page.rpc_reply.toPlainText(), 30, what="RPC reply")
        # log stream: a reboot makes the device log "online as ..."
        page.tabs.setCurrentIndex(2)
        await until(lambda: page.log_view.thing == thing and page.log_view._unsub is not None, 15,
                    what="the Device page following the thing's log stream")
        reboots = fleet.things[thing].reported.get("reboot", 0)
        await cloud_session.shadows.update(thing, desired={"reboot": reboots + 1})
        await until(lambda: "online as" in page.log_view.toPlainText(), 90, what="device log line")

    qloop.run_until_complete(asyncio.wait_for(scenario(), 230))


def test_editor_says_when_the_device_reported_the_sent_change(qtbot):
    ed = ShadowEditor()
    qtbot.addWidget(ed)
    assert ed.refresh_spin.value() == 10_000 and not ed.dirty  # the firmware default, not the 100 ms minimum
    ed.set_document({"state": {"reported": {"on": False, "refresh": 5000}}, "version": 3})
    ed.on_check.setChecked(True)
    assert ed.send()
    ed.show_message("Accepted: version 4. Waiting for the device to report…")
    ed.sent({"on": True})
    ed.set_document({"state": {"desired": {"on": True}, "reported": {"on": False, "refresh": 5000}}, "version": 4})
    assert ed.message.text().startswith("Accepted: version 4. Waiting")
    ed.set_document({"state": {"desired": {"on": True}, "reported": {"on": True, "refresh": 5000}}, "version": 5})
    assert ed.message.text() == "The device reported the change (on): version 5."
    ed.reset()
    assert ed.message.text() == "" and ed.awaiting is None


def test_buttons_without_a_thing_say_what_to_do(app_window):
    ctx, win = app_window
    page = win.show_page("Device")
    assert page.info.text().startswith("Not connected: ") and "Settings" in page.info.text()
    page.csv_button.click()  # no file dialog: there is nothing to export yet
    assert page.export_label.text().startswith("Pick a thing first")
    page.call_rpc()
    assert page.rpc_reply.toPlainText().startswith("Pick a thing first")
    page.shadow.on_check.setChecked(True)
    page.shadow.send()
    assert page.shadow.message.text().startswith("Pick a thing first")
    page.open_target("some-thing")
    page.call_rpc()
    assert page.rpc_reply.toPlainText().startswith("Not connected") and "Settings" in page.rpc_reply.toPlainText()


@pytest.mark.slow
def test_device_page_lists_shows_and_edits_a_named_shadow(app_window, cloud_session, sim_fleet, sandbox, qloop):
    """A thing's named shadow appears in the shadow picker; picking it shows its document, and a
    desired change sent from the raw editor lands in that named shadow, not in the classic one."""
    import boto3

    ctx, win = app_window
    ctx.live.attach(cloud_session)
    specs, _runner = sim_fleet(1, "guinamed", rate=2)
    thing = specs[0].thing
    data = boto3.client("iot-data", **sandbox.boto3_kwargs())
    data.update_thing_shadow(thingName=thing, shadowName="lamp",
                             payload=json.dumps({"state": {"reported": {"on": False, "refresh": 7000}}}))
    page = win.show_page("Device")

    def named(name):
        return json.loads(data.get_thing_shadow(thingName=thing, shadowName=name)["payload"].read())

    async def scenario():
        await until(lambda: thing in cloud_session.fleet.things, 60, what="thing known")
        ctx.navigate.emit("Device", thing)
        combo = page.shadow.name_combo
        await until(lambda: combo.findData("lamp") >= 0, 30, what="the named shadow in the picker")
        classic_version = json.loads(data.get_thing_shadow(thingName=thing)["payload"].read())["version"]
        combo.setCurrentIndex(combo.findData("lamp"))
        await until(lambda: (page.shadow.doc.get("state") or {}).get("reported") == {"on": False, "refresh": 7000}, 30,
                    what="the named shadow's document shown")
        assert page.shadow_name == "lamp"
        page.shadow.tabs.setCurrentIndex(1)
        # the editor takes only keys the firmware accepts, on named shadows too
        page.shadow.raw_edit.setPlainText('{"color": "blue"}')
        assert not page.shadow.send()
        page.shadow.raw_edit.setPlainText('{"refresh": 2000}')
        assert page.shadow.send(), page.shadow.message.text()
        await until(lambda: named("lamp")["state"].get("desired") == {"refresh": 2000}, 30,
                    what="desired.refresh in the named shadow")
        await until(lambda: page.shadow.message.text().startswith("Accepted: version 2"), 30,
                    what="the accepted message")
        classic = json.loads(data.get_thing_shadow(thingName=thing)["payload"].read())
        assert (classic["state"].get("desired") or {}).get("refresh") != 2000, "the edit went to the classic shadow"
        assert classic["version"] >= classic_version

    qloop.run_until_complete(asyncio.wait_for(scenario(), 170))
