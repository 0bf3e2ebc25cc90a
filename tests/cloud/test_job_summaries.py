"""What the Jobs page reads from fleetdesk.cloud.jobs: failures first, with the device's reason,
and a job request refused before the cloud is asked when it cannot work."""

from __future__ import annotations

import pytest

from fleetdesk.cloud.jobs import JobRequest, failure_reason, failures_text, parse_document, process_summary
from fleetdesk.errors import FleetdeskError


def test_a_completed_job_whose_executions_failed_reads_as_failed():
    text, bad = process_summary({"status": "COMPLETED", "jobProcessDetails": {
        "numberOfSucceededThings": 1, "numberOfFailedThings": 3, "numberOfQueuedThings": 0}})
    assert (text, bad) == ("3 failed · 1 succeeded", True)
    assert process_summary({"jobProcessDetails": {"numberOfSucceededThings": 2}}) == ("2 succeeded", False)


def test_failures_name_the_thing_and_the_devices_reason():
    rows = [{"thing": "b", "status": "FAILED", "reason": "no OTA app partition"},
            {"thing": "a", "status": "SUCCEEDED", "reason": ""},
            {"thing": "c", "status": "TIMED_OUT", "reason": ""}]
    assert failures_text(rows) == "2 of 3 failed: b: no OTA app partition; c: timed_out"
    assert failures_text(rows[1:2]) == ""
    assert failure_reason({"statusDetails": {"detailsMap": {"step": "download", "reason": "bad sha256"}}}) == "bad sha256"


@pytest.mark.parametrize("request_, needle", [
    (JobRequest({"operation": "reboot"}), "pick at least one thing or group"),
    (JobRequest({"operation": "ota", "sha256": "SHA256_OF_THE_IMAGE"}, things=["t"]), "pick a firmware file"),
    (JobRequest({"operation": "reboot"}, things=["t"], job_id="ota-1.2.0"), "letters, digits"),
])
def test_requests_that_cannot_work_are_refused_with_the_fix(request_, needle):
    with pytest.raises(FleetdeskError) as err:
        request_.check()
    assert needle in err.value.advice


def test_an_automatic_job_id_names_the_operation():
    assert JobRequest({"operation": "reboot"}, things=["t"]).resolved_id().startswith("reboot-")


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_a_document_a_board_cannot_parse_is_refused(constant):
    with pytest.raises(ValueError, match=f"{constant} is not JSON: a board could not read the job"):
        parse_document('{"operation": "config", "settings": {"refresh": %s}}' % constant)
