"""The whole chain: `fleetdesk firmware build` bundle + per-device config/certs, flashed with the
real esptool CLI onto a virtual board, which boots it under the MicroPython unix port and
goes online in the sandbox: shadow, telemetry, a desired change made with boto3, a job."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from helpers_sandbox import der, poll

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def test_esptool_flashed_board_goes_online(sandbox, tmp_path):
    import boto3

    from fleetdesk.boards import bundle
    from fleetdesk.cloud.identity import create_device_identity
    from fleetdesk.virtual.host import BoardHost
    from fleetdesk.virtual.spec import BoardSpec

    kw = sandbox.boto3_kwargs()
    iot, data = boto3.client("iot", **kw), boto3.client("iot-data", **kw)
    thing = "flashed-" + tmp_path.name[-8:].replace("_", "-")
    ident = create_device_identity(iot, thing)
    with open(sandbox.ca_file) as f:
        ca = der(f.read())
    cfg = {"thing_name": thing, "endpoint": sandbox.mqtt_host, "port": sandbox.mqtt_port,
           "region": sandbox.region}
    built = bundle.build_bundle(tmp_path / "bundle", chip="esp32").with_vfs_files({
        "/config.json": json.dumps(cfg).encode(), "/certs/ca.der": ca,
        "/certs/cert.der": der(ident.certificate_pem), "/certs/key.der": der(ident.private_key_pem, key=True),
        "/settings.json": b'{"refresh": 1000}'})
    args = []
    for p in built.parts:
        (tmp_path / f"{p.name}.bin").write_bytes(p.data)
        args += [hex(p.offset), str(tmp_path / f"{p.name}.bin")]

    host = BoardHost()
    try:
        board = host.start_board(BoardSpec(chip="esp32", name="fw-chain"), tmp_path / "boards")
        r = subprocess.run([sys.executable, "-m", "esptool", "--port", board.url, "write-flash", *args],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]

        def rep():
            try:
                doc = json.loads(data.get_thing_shadow(thingName=thing)["payload"].read())
            except Exception:  # noqa: BLE001
                return {}
            return doc.get("state", {}).get("reported", {})

        got = poll(lambda: (lambda r: r if "temperature" in r else None)(rep()), 60.0)
        assert got["firmware_version"] == built.version and got["chip"] == "esp32"
        data.update_thing_shadow(thingName=thing, payload=json.dumps({"state": {"desired": {"refresh": 2500}}}))
        poll(lambda: rep().get("refresh") == 2500, 60.0)
        arn = iot.describe_thing(thingName=thing)["thingArn"]
        iot.create_job(jobId=f"job-{thing}", targets=[arn],
                       document=json.dumps({"operation": "config", "settings": {"on": True}}))
        ex = poll(lambda: (lambda e: e if e["status"] in ("SUCCEEDED", "FAILED") else None)(
            iot.describe_job_execution(jobId=f"job-{thing}", thingName=thing)["execution"]), 60.0)
        assert ex["status"] == "SUCCEEDED"
        assert "online as " + thing in board.console_text
    finally:
        host.close()
