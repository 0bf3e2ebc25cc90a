"""Jobs page: templates and validation, and an OTA rollout from the page against the sandbox
with simulated devices (good hash -> new firmware_version, bad hash -> FAILED)."""

from __future__ import annotations

import asyncio
import json

import pytest

from PySide6.QtCore import Qt

from fleetdesk.cloud.jobs import load_templates, local_time, parse_document, status_counts

from gui_testutil import until

pytestmark = [pytest.mark.gui, pytest.mark.timeout(300)]


def test_templates_and_document_validation():
    t = load_templates()
    assert {"reboot", "ota", "config"} <= set(t)
    assert json.loads(t["reboot"]) == {"operation": "reboot"}
    with pytest.raises(ValueError, match="line 1, column 24: Expecting property name"):
        parse_document('{"operation": "reboot",}')
    with pytest.raises(ValueError, match="JSON object"):
        parse_document('"reboot"')


def test_refuses_without_session_or_targets(app_window):
    ctx, win = app_window
    page = win.show_page("Jobs")
    assert page.message.text().startswith("Not connected") and "Settings" in page.message.text()
    assert page.thing_list.count() == 1 and page.thing_list.item(0).text() == "(not connected)"
    assert page.checked(page.thing_list) == []
    assert not page.create_job()
    assert "Not connected" in page.message.text() and "Settings" in page.message.text()
    assert not page.cancel_job_button.isEnabled() and not page.cancel_exec_button.isEnabled()
    assert page.group_list.count() == 1 and page.group_list.item(0).text() == "(not connected)"
    page.open_target({"things": [], "groups": ["(not connected)"]})  # a placeholder is never a target
    assert page.group_list.item(0).data(Qt.CheckStateRole) is None, "the placeholder got a check box"
    assert page.checked(page.group_list) == []
    assert not page.abort_min_spin.isEnabled()
    page.abort_spin.setValue(20)
    assert page.abort_min_spin.isEnabled()


def test_job_times_are_local_and_counts_read_well():
    import datetime

    utc = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
    assert local_time(utc) == utc.astimezone().strftime("%Y-%m-%d %H:%M:%S")
    assert local_time(None) == ""
    assert status_counts(["SUCCEEDED", "FAILED", "SUCCEEDED", "IN_PROGRESS"]) == "2 succeeded · 1 failed · 1 in progress"


@pytest.mark.slow
def test_ota_job_from_the_page(app_window, cloud_session, sim_fleet, qloop, tmp_path):
    from fleetdesk.fleet.otapkg import firmware_package

    ctx, win = app_window
    ctx.live.attach(cloud_session)
    specs, runner = sim_fleet(3, "guijob", rate=1)
    names = [s.thing for s in specs]
    fleet = cloud_session.fleet
    page = win.show_page("Jobs")
    pkg = tmp_path / "fw-1.2.0.pkg"
    pkg.write_bytes(firmware_package("1.2.0"))

    async def scenario():
        await until(lambda: all(n in fleet.things and fleet.things[n].online for n in names), 60, what="online")
        # nothing targeted -> refused with a message
        page.template_combo.setCurrentText("reboot")
        page.open_target({"things": []})
        assert not page.create_job()
        assert "at least one thing or group" in page.message.text()
        # the OTA template is refused until a firmware file is picked
        page.template_combo.setCurrentText("ota")
        page.open_target({"things": names[:2]})
        assert not page.create_job() and "placeholders" in page.message.text()
        page.use_firmware(str(pkg), "1.2.0")
        await until(lambda: "uploaded" in page.message.text(), 20, what="upload")
        doc = json.loads(page.doc_edit.toPlainText())
        assert doc["version"] == "1.2.0" and len(doc["sha256"]) == 64 and "s3-presigned-url" in doc["url"]
        page.job_id_edit.setText("gui-ota-1.2.0")  # dots are not allowed in AWS job ids
        assert not page.create_job() and "letters, digits" in page.message.text()
        page.job_id_edit.setText("gui-ota-good")
        assert page.create_job()
        await until(lambda: page.execution_status().keys() == set(names[:2]), 30, what="executions listed")
        await until(lambda: all(fleet.things[n].firmware == "1.2.0" for n in names[:2]), 120,
                    what=f"2 devices on firmware 1.2.0 (executions: {page.execution_status()})")
        await until(lambda: {s for s, _ in page.execution_status().values()} == {"SUCCEEDED"}, 60,
                    what="executions SUCCEEDED")
        # one device with a bad hash: FAILED, stays on 1.0.0
        page.doc_edit.setPlainText(json.dumps({**doc, "sha256": "ab" * 32}))
        page.open_target({"things": names[2:]})
        page.job_id_edit.setText("gui-ota-bad")
        assert page.create_job()
        await until(lambda: page.execution_status().get(names[2], ("",))[0] == "FAILED", 90, what="bad hash FAILED")
        assert "sha256" in page.execution_status()[names[2]][1]
        assert page.exec_table.item(0, 2).toolTip() == page.execution_status()[names[2]][1]  # full reason
        await until(lambda: "(1): 1 failed" in page.exec_label.text(), 10, what="execution counts")
        await until(lambda: page._job_status.get("gui-ota-bad") == "COMPLETED", 30, what="job completed")
        # the failure is up front: above the executions with the device's reason, and in the jobs list
        assert page.failures_label.isVisible()
        assert page.failures_label.text().startswith(f"1 of 1 failed: {names[2]}: ") and "sha256" in page.failures_label.text()
        await until(lambda: any(page.jobs_table.item(r, 0).text() == "gui-ota-bad"
                                and page.jobs_table.item(r, 2).text() == "1 failed"
                                for r in range(page.jobs_table.rowCount())), 10, what="'1 failed' in the jobs list")
        assert any(page.jobs_table.item(r, 0).text() == "gui-ota-good" and page.jobs_table.item(r, 2).text() == "2 succeeded"
                   for r in range(page.jobs_table.rowCount()))
        assert not page.cancel_job_button.isEnabled(), "Cancel job offered on a completed job"
        assert fleet.things[names[2]].firmware == "1.0.0"
        # a job against an empty group: a clear message
        await cloud_session.control.create_group("gui-empty-group")
        page._session_changed(cloud_session)  # reload the group list
        await until(lambda: "gui-empty-group" in [page.group_list.item(i).text() for i in range(page.group_list.count())],
                    10, what="groups listed")
        page.open_target({"groups": ["gui-empty-group"]})
        page.template_combo.setCurrentText("reboot")
        page.job_id_edit.setText("gui-empty")
        assert page.create_job()
        await until(lambda: "has no things" in page.message.text(), 20, what="empty group message")
        assert "  -> " not in page.message.text()  # advice after "→" on its own line, not terminal style
        # cancel one execution, then the job (a thing with no device: its execution stays QUEUED)
        await cloud_session.control.create_thing("gui-no-device-a")
        await cloud_session.control.create_thing("gui-no-device-b")
        fleet.apply_registry([{"thingName": "gui-no-device-a"}, {"thingName": "gui-no-device-b"}])
        page.open_target({"things": ["gui-no-device-a", "gui-no-device-b"]})
        page.job_id_edit.setText("gui-cancel")
        page.rate_spin.setValue(5)
        page.abort_spin.setValue(30)
        page.abort_min_spin.setValue(2)
        page.timeout_spin.setValue(15)
        assert page.create_job()
        await until(lambda: page.selected_job == "gui-cancel" and len(page.execution_status()) == 2, 30,
                    what="queued executions")
        # the rollout, abort and timeout typed in the form are what the cloud holds
        job = await cloud_session.control.describe_job("gui-cancel")
        assert job["jobExecutionsRolloutConfig"]["maximumPerMinute"] == 5
        crit = job["abortConfig"]["criteriaList"][0]
        assert (crit["failureType"], crit["action"], crit["thresholdPercentage"], crit["minNumberOfExecutedThings"]) \
            == ("FAILED", "CANCEL", 30, 2)
        assert job["timeoutConfig"]["inProgressTimeoutInMinutes"] == 15
        row = sorted(page.execution_status()).index("gui-no-device-a")
        assert not page.cancel_exec_button.isEnabled()
        page.exec_table.selectRow(row)
        assert page.cancel_exec_button.isEnabled()
        await until(lambda: page.cancel_job_button.isEnabled(), 10, what="Cancel job offered on a running job")
        page.cancel_execution()
        await until(lambda: page.execution_status()["gui-no-device-a"][0] == "CANCELED", 30, what="execution canceled")
        assert page.execution_status()["gui-no-device-b"][0] == "QUEUED"
        page.cancel_job()
        await until(lambda: page.execution_status()["gui-no-device-b"][0] == "CANCELED", 30, what="job canceled")

    qloop.run_until_complete(asyncio.wait_for(scenario(), 290))


def test_a_flash_image_is_refused_before_upload_and_the_package_can_be_built(app_window, cloud_session, qloop,
                                                                               tmp_path):
    """Issue 20 item 7: a bundle's app.bin would upload and then fail on every device; the page
    says so up front, and Build OTA package makes (and uploads) the package of this firmware."""
    ctx, win = app_window
    ctx.live.attach(cloud_session)
    page = win.show_page("Jobs")
    app_bin = tmp_path / "app.bin"
    app_bin.write_bytes(b"\xe9" + b"\x00" * 255)  # what an ESP app image starts with
    page.use_firmware(str(app_bin), "1.3.0")
    assert page.message.text().startswith("OTA: app.bin is a flash image") and "Build OTA package" in page.message.text()
    page.ota_version.setText("")
    page.build_ota()
    assert "Type the new firmware_version first" in page.message.text()
    page.ota_version.setText("1.3.0")
    page.build_ota()

    async def uploaded():
        await until(lambda: page.message.text().startswith("uploaded fleetdesk-1.3.0.pkg"), 60,
                    what=f"the built package uploaded (message: {page.message.text()!r})")

    qloop.run_until_complete(uploaded())
    doc = json.loads(page.doc_edit.toPlainText())
    assert doc["version"] == "1.3.0" and len(doc["sha256"]) == 64


def test_cli_builds_an_ota_package(tmp_path):
    import subprocess
    import sys

    from fleetdesk.fleet.otapkg import MAGIC

    out = tmp_path / "fw.pkg"
    proc = subprocess.run([sys.executable, "-m", "fleetdesk", "firmware", "ota", "--version", "2.0.1", "-o", str(out),
                           "--json"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["path"] == str(out) and info["version"] == "2.0.1" and out.read_bytes().startswith(MAGIC)

