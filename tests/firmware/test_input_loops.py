"""Firmware input cannot loop (issue 16 §6) and what the board takes into its heap.

An invalid desired value is reported once in reported.error, naming the value, and the
firmware clears that desired key itself: no report -> delta -> report ping-pong (an invalid
`reboot` used to make 17-30 shadow updates a second). A job document the board cannot take
fails with the reason and the next job still runs. settings.json stays validated and small.
"""

from __future__ import annotations

import json
import sys

import pytest
from helpers_sandbox import poll
from sandbox_board import sandbox_board

from fleetdesk.paths import FIRMWARE_DIR

pytestmark = [pytest.mark.timeout(180)]

SH = "$aws/things/dev1/shadow"
JOBS = "$aws/things/dev1/jobs"


def reported(pred):
    return lambda d: pred(d.get("state", {}).get("reported", {}))


# ---------------------------------------------------------------- against the sandbox (real shadow versions)

@pytest.fixture
def quiet_board(sandbox, tmp_path):
    """A board whose own reports are few (refresh 1 h: one DHT report at boot)."""
    with sandbox_board(sandbox, tmp_path, prefix="fw-loop", mac="24:0a:c4:12:34:57", refresh_ms=3600000) as b:
        yield b


def _shadow(b) -> dict:
    from botocore.exceptions import ClientError

    try:
        return json.loads(b["data"].get_thing_shadow(thingName=b["thing"])["payload"].read())
    except ClientError:
        return {}


def _desire(b, desired) -> int:
    r = b["data"].update_thing_shadow(thingName=b["thing"], payload=json.dumps({"state": {"desired": desired}}))
    return json.loads(r["payload"].read())["version"]


@pytest.mark.slow
def test_invalid_desired_values_are_reported_once_and_cleared_no_ping_pong(sandbox, quiet_board):
    b = quiet_board
    poll(lambda: "temperature" in _shadow(b).get("state", {}).get("reported", {}))
    bad = {"reboot": "soon", "refresh": 5, "on": "yes", "firmware_version": "2.0.0", "colour": "red"}
    v0 = _desire(b, bad)

    def cleared():
        doc = _shadow(b)
        st = doc.get("state", {})
        return doc if not (set(bad) & set(st.get("desired", {}))) and st.get("reported", {}).get("error") else None

    doc = poll(cleared, 30)
    err = doc["state"]["reported"]["error"]
    for shown in ('"soon"', "refresh 5 out of range", 'on must be true or false, got "yes"', "2.0.0", "'colour'"):
        assert shown in err, err
    assert "delta" not in doc["state"]
    v1 = doc["version"]
    assert v1 - v0 <= 3, f"the bad update made {v1 - v0} more shadow versions"
    # then it stays: a good value after it is applied with two versions (ours + the report)
    v2 = _desire(b, {"on": True})
    doc = poll(lambda: (lambda d: d if d["state"]["reported"].get("on") is True else None)(_shadow(b)))
    assert doc["version"] - v2 <= 2 and v2 - v1 <= 2, (v0, v1, v2, doc["version"])
    assert doc["state"]["reported"].get("error") is None and "delta" not in doc["state"]  # null deletes it
    assert b["handle"].boots == 1


@pytest.mark.slow
def test_bad_job_documents_fail_with_the_reason_and_never_block_the_next(sandbox, quiet_board):
    b = quiet_board
    poll(lambda: "firmware_version" in _shadow(b).get("state", {}).get("reported", {}))

    def run(job_id, document):
        b["iot"].create_job(jobId=job_id, targets=[b["arn"]], document=json.dumps(document))

        def done():
            ex = b["iot"].describe_job_execution(jobId=job_id, thingName=b["thing"])["execution"]
            return ex if ex["status"] in ("SUCCEEDED", "FAILED", "REJECTED") else None

        return poll(done, 40)

    t = b["thing"]
    ex = run(f"bad-url-{t}", {"operation": "ota", "url": 5, "sha256": "a" * 64, "version": "1.2.0"})
    assert ex["status"] == "FAILED" and "url must be an https:// URL" in ex["statusDetails"]["detailsMap"]["reason"]
    ex = run(f"bad-op-{t}", {"operation": ["x"], "settings": {}})
    assert ex["status"] == "FAILED" and 'unknown operation ["x"]' in ex["statusDetails"]["detailsMap"]["reason"]
    ex = run(f"good-{t}", {"operation": "config", "settings": {"refresh": 4000}})
    assert ex["status"] == "SUCCEEDED", ex
    assert json.loads((b["fs"] / "settings.json").read_text())["refresh"] == 4000


# ---------------------------------------------------------------- against a plain broker (what goes over the wire)

@pytest.mark.slow
async def test_device_clears_the_rejected_desired_key_in_its_own_update(cloud, device_factory):
    device_factory(settings={"refresh": 1000})
    await cloud.expect(f"{JOBS}/start-next")
    m = cloud.mark()
    await cloud.send(f"{SH}/update/delta", {"version": 7, "state": {"reboot": -3, "refresh": 2000}})
    d = await cloud.expect(f"{SH}/update", lambda d: "desired" in d["state"], since=m)
    assert d["state"]["desired"] == {"reboot": None}
    assert d["state"]["reported"]["refresh"] == 2000 and "got -3" in d["state"]["reported"]["error"]


@pytest.mark.slow
async def test_shadow_get_answers_only_the_devices_own_request_and_a_too_large_job_fails(cloud, device_factory):
    dev = device_factory(settings={"refresh": 1000})
    get = await cloud.expect(f"{SH}/get")
    m = cloud.mark()
    # someone else's get answer arrives while the device is subscribed: not applied
    await cloud.send(f"{SH}/get/accepted", {"clientToken": "app-1", "state": {"delta": {"refresh": 7000}}})
    await cloud.send(f"{SH}/get/accepted", {"clientToken": get["clientToken"], "version": 3,
                                            "state": {"delta": {"refresh": 2500}}})
    await cloud.expect(f"{SH}/update", reported(lambda r: r.get("refresh") == 2500), since=m)
    assert dev.settings()["refresh"] == 2500

    big = {"execution": {"jobId": "huge-1", "jobDocument": {"operation": "config", "pad": "x" * 20000}}}
    await cloud.send(f"{JOBS}/start-next/accepted", big)
    d = await cloud.expect(f"{JOBS}/huge-1/update", since=m)
    assert d["status"] == "FAILED" and "larger than the board's 16384-byte message limit" in d["statusDetails"]["reason"]
    await cloud.send(f"{JOBS}/start-next/accepted", {"execution": {
        "jobId": "next-1", "jobDocument": {"operation": "config", "settings": {"on": True}}}})
    d = await cloud.expect(f"{JOBS}/next-1/update", since=m)
    assert d["status"] == "SUCCEEDED"


# ---------------------------------------------------------------- settings.json (in-process)

def test_settings_json_values_are_validated_and_bounded(tmp_path):
    if str(FIRMWARE_DIR) not in sys.path:
        sys.path.append(str(FIRMWARE_DIR))
    from fd.settings import Settings

    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"refresh": 2000, "firmware_url": "https://h/" + "x" * 5000,
                                "ota_failed": ["k%d" % i for i in range(100)], "reboot": -1, "on": "yes",
                                "firmware_version": "1.1.0", "junk": {"a": [1] * 1000}}))
    s = Settings(str(path))
    assert s["refresh"] == 2000 and s["firmware_version"] == "1.1.0"
    assert s.get("firmware_url") is None and s["ota_failed"] == [] and s["reboot"] == 0 and s["on"] is False
    assert "junk" not in s.data
    assert "firmware_url" in s.problem and "ota_failed" in s.problem
    with pytest.raises(ValueError, match="firmware_url"):
        s.update(firmware_url="http://plain/x")
    s.update(refresh=5000, firmware_url="https://h/fw.pkg")
    assert len(path.read_bytes()) < 400 and json.loads(path.read_text())["refresh"] == 5000
