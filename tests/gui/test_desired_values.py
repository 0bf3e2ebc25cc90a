"""Issue 20 item 2, app side: no form offers a desired value the firmware refuses (each
refusal would be a shadow update, again and again), the Device page says when the device
refused a change instead of "Waiting…" forever, a 409 caused only by the device's own
reports does not fail the user's send, and Fleet → Set desired proposes a valid value."""

from __future__ import annotations

import asyncio
import time

import pytest
from gui_testutil import until

from fleetdesk.cloud.errors import ShadowConflict
from fleetdesk_gui.widgets.shadow_editor import ShadowEditor

pytestmark = [pytest.mark.gui, pytest.mark.timeout(240)]


@pytest.fixture
def editor(qtbot):
    ed = ShadowEditor()
    qtbot.addWidget(ed)
    ed.set_document({"state": {"reported": {"on": False, "refresh": 10000, "reboot": 2}}, "version": 5})
    sent = []
    ed.send_requested.connect(lambda d, v, b: sent.append(d))
    return ed, sent


def test_the_form_cannot_go_below_the_firmware_minimum(editor):
    ed, sent = editor
    assert ed.refresh_spin.minimum() == 1000 and ed.refresh_spin.maximum() == 3_600_000
    ed.refresh_spin.setValue(50)  # what typing 50 gives
    assert ed.refresh_spin.value() == 1000


@pytest.mark.parametrize("raw,needle", [
    ('{"refresh": 50}', "refresh must be a whole number of milliseconds from 1000 to 3600000, not 50"),
    ('{"reboot": "x"}', 'reboot must be a whole number above the reported counter'),
    ('{"reboot": 1.5}', "not 1.5"),
    ('{"reboot": true}', "not true"),
    ('{"on": "yes"}', "on must be true or false"),
    ('{"temperature": 3}', "temperature is reported by the device and cannot be desired"),
])
def test_raw_json_the_firmware_refuses_is_not_sent(editor, raw, needle):
    ed, sent = editor
    ed.tabs.setCurrentIndex(1)
    ed.raw_edit.setPlainText(raw)
    assert not ed.send()
    assert ed.message.text().startswith("Not sent: ") and needle in ed.message.text()
    assert "b3261e" in ed.message.styleSheet()  # red
    assert sent == []


def test_null_clears_a_desired_key(editor):
    ed, sent = editor
    ed.tabs.setCurrentIndex(1)
    ed.raw_edit.setPlainText('{"refresh": null}')
    assert ed.send() and sent == [{"refresh": None}]


def test_a_refusal_by_the_device_replaces_waiting(editor):
    ed, sent = editor
    ed.firmware_edit.setText("9.9.9")
    assert ed.send()
    ed.show_message("Accepted: version 6. Waiting for the device to report…", ok=None)
    assert "52606d" in ed.message.styleSheet(), "waiting is not shown as success"
    ed.sent({"firmware_version": "9.9.9"})
    now = int(time.time())
    error = "firmware_version 9.9.9 needs firmware_url in desired"
    ed.set_document({"state": {"desired": {"firmware_version": "9.9.9"},
                               "reported": {"on": False, "refresh": 10000, "error": error}},
                     "metadata": {"reported": {"error": {"timestamp": now}}}, "version": 7})
    assert ed.message.text() == (f"The device refused the change (firmware_version): {error}. "
                                 "Send a value it takes, or null to clear the desired key.")
    assert "b3261e" in ed.message.styleSheet()
    assert ed.awaiting is None


def test_a_refusal_that_came_before_the_page_handled_the_accept_is_still_shown(editor):
    """A quick device refuses within the second of the accept; a busy app handles the accept
    reply seconds later. The refusal is compared with the accept's own timestamp (the shadow
    service's clock), not with when the page got round to it (or this computer's clock)."""
    ed, sent = editor
    ed.firmware_edit.setText("9.9.9")
    assert ed.send()
    accepted_at = int(time.time()) - 5  # the service accepted the update 5 s before the page saw it
    ed.sent({"firmware_version": "9.9.9"}, accepted_at=accepted_at)
    error = "firmware_version 9.9.9 needs a valid firmware_url in desired"
    ed.set_document({"state": {"reported": {"on": False, "refresh": 10000, "error": error}},
                     "metadata": {"reported": {"error": {"timestamp": accepted_at}}}, "version": 7})
    assert ed.message.text().startswith("The device refused the change (firmware_version)"), ed.message.text()
    assert ed.awaiting is None


def test_an_old_error_is_not_taken_for_a_refusal(editor):
    ed, sent = editor
    ed.on_check.setChecked(True)
    assert ed.send()
    ed.sent({"on": True})
    ed.set_document({"state": {"desired": {"on": True}, "reported": {"on": False, "error": "older"}},
                     "metadata": {"reported": {"error": {"timestamp": int(time.time()) - 3600}}}, "version": 6})
    assert ed.awaiting == {"on": True} and "refused" not in ed.message.text()


@pytest.mark.slow
def test_device_page_sends_over_the_devices_own_reports_and_fleet_proposes_valid_values(
        app_window, cloud_session, sim_fleet, qloop):
    from fleetdesk.cloud.desired import default_text

    ctx, win = app_window
    ctx.live.attach(cloud_session)
    specs, runner = sim_fleet(1, "guidesired", rate=5)
    thing = specs[0].thing
    fleet = cloud_session.fleet
    page = win.show_page("Device")

    async def scenario():
        await until(lambda: thing in fleet.things and fleet.things[thing].online, 60, what="device online")
        ctx.navigate.emit("Device", thing)
        await until(lambda: page.shadow.version is not None, 30, what="shadow loaded")
        stale = page.shadow.version
        page.shadow.tabs.setCurrentIndex(1)
        page.shadow.raw_edit.setPlainText('{"refresh": 2000}')
        # the device reports meanwhile (its readings): the version moves, no desired key changed
        await cloud_session.shadows.update(thing, reported={"temperature": 21})
        await until(lambda: page.shadow.version > stale, 10, what="the version moving")
        # and it reports again after each of the next two 409s, before the page's resend arrives
        # (a busy device or a loaded machine): the page must keep sending over its reports
        real_update, resent_over = cloud_session.shadows.update, []

        async def update_then_the_device_reports(which, **kw):
            try:
                return await real_update(which, **kw)
            except ShadowConflict:
                if len(resent_over) < 2:
                    resent_over.append(await real_update(which, reported={"temperature": 22 + len(resent_over)}))
                raise

        cloud_session.shadows.update = update_then_the_device_reports
        assert page.shadow.send()
        await until(lambda: "The device reported the change (refresh)" in page.shadow.message.text(), 60,
                    what=lambda: f"the change applied, not a 409 (message: {page.shadow.message.text()!r}, "
                                 f"reported: {fleet.things[thing].reported!r})")
        assert fleet.things[thing].reported.get("refresh") == 2000
        assert len(resent_over) == 2
        cloud_session.shadows.update = real_update
        # the firmware refuses an OTA version without a URL: the page says so, in red
        page.shadow.raw_edit.setPlainText('{"firmware_version": "9.9.9"}')
        assert page.shadow.send()
        await until(lambda: "The device refused the change (firmware_version)" in page.shadow.message.text(), 60,
                    what=lambda: f"the refusal shown (message: {page.shadow.message.text()!r})")
        assert "firmware_url" in page.shadow.message.text()
        await cloud_session.shadows.update(thing, desired={"firmware_version": None})

    qloop.run_until_complete(asyncio.wait_for(scenario(), 200))
    assert default_text("refresh") == "10000" and default_text("on") == "true"
