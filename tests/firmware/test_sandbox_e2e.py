"""End to end: the firmware under the MicroPython unix port against the sandbox.

The cloud side is only boto3 (iot, iot-data) — what a user or the app does."""

from __future__ import annotations

import json

import pytest
from helpers_sandbox import der, poll
from sandbox_board import sandbox_board

from fleetdesk.fleet.otapkg import firmware_package, sha256_hex

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


@pytest.fixture
def board(sandbox, tmp_path):
    with sandbox_board(sandbox, tmp_path, prefix="fw-e2e", mac="24:0a:c4:12:34:56", refresh_ms=1000) as b:
        yield b


def shadow(b):
    from botocore.exceptions import ClientError

    try:
        return json.loads(b["data"].get_thing_shadow(thingName=b["thing"])["payload"].read())
    except ClientError:
        return {}


def reported(b):
    return shadow(b).get("state", {}).get("reported", {})


def run_job(b, job_id, document, timeout=40):
    b["iot"].create_job(jobId=job_id, targets=[b["arn"]], document=json.dumps(document))

    def done():
        ex = b["iot"].describe_job_execution(jobId=job_id, thingName=b["thing"])["execution"]
        return ex if ex["status"] in ("SUCCEEDED", "FAILED", "REJECTED") else None

    return poll(done, timeout)


def test_firmware_against_sandbox(sandbox, board):
    b = board
    r = poll(lambda: (lambda r: r if "temperature" in r else None)(reported(b)))
    assert r["firmware_version"] == "1.0.0" and r["refresh"] == 1000 and isinstance(r["humidity"], int)

    b["data"].update_thing_shadow(thingName=b["thing"], payload=json.dumps(
        {"state": {"desired": {"on": True, "refresh": 2000}}}))
    poll(lambda: reported(b).get("refresh") == 2000 and reported(b).get("on") is True)
    assert "delta" not in shadow(b).get("state", {}) or not shadow(b)["state"]["delta"]

    b["data"].update_thing_shadow(thingName=b["thing"], payload=json.dumps({"state": {"desired": {"refresh": 5}}}))
    err = poll(lambda: reported(b).get("error"))
    assert "out of range" in err and reported(b)["refresh"] == 2000
    b["data"].update_thing_shadow(thingName=b["thing"], payload=json.dumps({"state": {"desired": {"refresh": 3000}}}))
    poll(lambda: reported(b).get("refresh") == 3000 and not reported(b).get("error"))

    # a config job changes settings outside the shadow: clear desired so no delta undoes it
    b["data"].update_thing_shadow(thingName=b["thing"], payload=json.dumps({"state": {"desired": None}}))
    ex = run_job(b, f"cfg-{b['thing']}", {"operation": "config", "settings": {"refresh": 4000}})
    assert ex["status"] == "SUCCEEDED", ex
    poll(lambda: reported(b).get("refresh") == 4000)

    # RPC arrives through the sandbox's ACLs (the reply topic is covered by the broker tests)
    b["data"].publish(topic=f"{b['thing']}/rpc", qos=1, payload=json.dumps(
        {"id": 9, "method": "Config.Set", "args": {"config": {"refresh": 6000}}}))
    poll(lambda: reported(b).get("refresh") == 6000)
    assert b"refused some subscriptions" not in bytes(b["out"])

    ex = run_job(b, f"reboot-{b['thing']}", {"operation": "reboot"})
    assert ex["status"] == "SUCCEEDED" and ex["statusDetails"]["detailsMap"]["rebooted"] == "true"
    assert b["handle"].boots == 2
    assert b["handle"].running


def test_ota_job_via_sandbox_file_store(sandbox, board):
    from fleetdesk.sandbox import files

    b = board
    poll(lambda: reported(b).get("firmware_version") == "1.0.0")
    pkg = firmware_package("1.2.0")
    url = files.put(sandbox.state_dir, f"fw/{b['thing']}/1.2.0.pkg", pkg)
    ex = run_job(b, f"ota-bad-{b['thing']}", {"operation": "ota", "url": url, "sha256": "ab" * 32,
                                              "version": "1.2.0"})
    assert ex["status"] == "FAILED" and "sha256 mismatch" in ex["statusDetails"]["detailsMap"]["reason"]
    assert reported(b)["firmware_version"] == "1.0.0" and b["handle"].boots == 1

    ex = run_job(b, f"ota-ok-{b['thing']}", {"operation": "ota", "url": url, "sha256": sha256_hex(pkg),
                                             "version": "1.2.0"}, timeout=60)
    assert ex["status"] == "SUCCEEDED", ex
    poll(lambda: reported(b).get("firmware_version") == "1.2.0")
    assert b"fleetdesk-fw 1.2.0 on esp32" in bytes(b["out"])


def test_provisioning_by_claim_then_connects_as_the_thing(sandbox, tmp_path):
    import boto3

    from devfs import make_device_fs

    from fleetdesk.sandbox.provisioning import setup_claim
    from fleetdesk.virtual.runtime import launch_firmware

    kw = sandbox.boto3_kwargs()
    claim = setup_claim(boto3.client("iot", **kw))
    with open(sandbox.ca_file) as f:
        ca = der(f.read())
    fs = make_device_fs(tmp_path / "fs", thing=None, endpoint=sandbox.mqtt_host, port=sandbox.mqtt_port,
                        ca_der=ca, settings={"refresh": 1000},
                        extra={"claim": {"cert": "/certs/claim-cert.der", "key": "/certs/claim-key.der",
                                         "template": claim["templateName"]}})
    (fs / "certs" / "claim-cert.der").write_bytes(der(claim["certificatePem"]))
    (fs / "certs" / "claim-key.der").write_bytes(der(claim["privateKey"], key=True))
    out = bytearray()
    mac = "24:0a:c4:c1:a1:77"
    h = launch_firmware(fs, mac=mac, chip="esp32s3", console=out.extend)
    try:
        thing = "esp-240ac4c1a177"
        poll(lambda: f"provisioned by claim as {thing}".encode() in out, timeout=40)
        b = {"thing": thing, "data": boto3.client("iot-data", **kw)}
        r = poll(lambda: (lambda r: r if "temperature" in r else None)(reported(b)))
        assert r["chip"] == "esp32s3" and r["firmware_version"] == "1.0.0"
        cfg = json.loads((fs / "config.json").read_text())
        assert cfg["thing_name"] == thing and (fs / "certs" / "cert.der").stat().st_size > 100
        assert (fs / "certs" / "key.der").stat().st_mode & 0o777 == 0o600
    finally:
        h.stop()


def test_cli_rpc_answered_by_the_running_firmware(sandbox, board, monkeypatch, capsys):
    """`fleetdesk rpc` success path: the firmware online in the sandbox answers Sys.GetInfo, FS.List
    and an unknown method (the device's JSON-RPC error, exit code 1)."""
    from fleetdesk.cli import main

    b = board
    poll(lambda: "temperature" in reported(b))  # online: subscribed to its rpc topic
    monkeypatch.setenv("FLEETDESK_SANDBOX_DIR", str(sandbox.state_dir))
    capsys.readouterr()
    assert main(["rpc", b["thing"], "Sys.GetInfo", "--timeout", "15", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["thing"] == b["thing"] and out["method"] == "Sys.GetInfo"
    info = out["result"]
    assert info["thing_name"] == b["thing"] and info["mac"] == "240AC4123456" and info["arch"] == "esp32"
    assert info["fw_version"] == "1.0.0" and info["mode"] == "normal" and info["ram_free"] > 0
    assert main(["rpc", b["thing"], "FS.List", '{"path": "/"}', "--timeout", "15", "--json"]) == 0
    entries = {e["name"]: e for e in json.loads(capsys.readouterr().out)["result"]}
    assert entries["certs"]["dir"] is True and entries["config.json"]["size"] == len((b["fs"] / "config.json").read_bytes())
    assert main(["rpc", b["thing"], "Sys.Nope", "--timeout", "15", "--json"]) == 1
    assert f"{b['thing']}: Sys.Nope failed: method not found: Sys.Nope" in capsys.readouterr().err
