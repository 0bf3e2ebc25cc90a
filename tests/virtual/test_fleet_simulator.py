"""`fleetdesk fleet simulate`: N things in the sandbox, each running the real firmware."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from helpers_sandbox import poll

from fleetdesk.virtual.fleet_sim import FleetRunner, provision_fleet

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

COUNT = 50


def test_fifty_simulated_devices(sandbox, tmp_path):
    import boto3

    fleet_dir = tmp_path / "fleet"
    specs = provision_fleet(sandbox, COUNT, fleet_dir, prefix="fs50")
    assert len(specs) == COUNT and len({s.mac for s in specs}) == COUNT
    key_mtimes = [(fleet_dir / s.thing / "certs" / "key.der").stat().st_mtime_ns for s in specs]
    assert (fleet_dir / specs[0].thing / "certs" / "key.der").stat().st_mode & 0o777 == 0o600

    again = provision_fleet(sandbox, COUNT, fleet_dir, prefix="fs50")  # idempotent: nothing new
    assert [s.thing for s in again] == [s.thing for s in specs]
    assert key_mtimes == [(fleet_dir / s.thing / "certs" / "key.der").stat().st_mtime_ns for s in specs]

    data = boto3.client("iot-data", **sandbox.boto3_kwargs())
    with FleetRunner(specs, rate=2, processes=2, log_dir=tmp_path / "logs") as runner:
        assert runner.wait_online(90), runner.stats.summary()
        sent0 = runner.stats.total("sent")
        deadline = time.monotonic() + 30  # every device keeps publishing (the rate itself: bench/fleet_scale.py)
        while runner.stats.total("sent") - sent0 < COUNT * 2:
            assert time.monotonic() < deadline, f"the fleet stopped publishing: {runner.stats.summary()}"
            time.sleep(0.1)

        def rep(thing):
            try:
                doc = json.loads(data.get_thing_shadow(thingName=thing)["payload"].read())
            except Exception:  # noqa: BLE001
                return {}
            return doc.get("state", {}).get("reported", {})

        for s in (specs[0], specs[-1]):
            r = poll(lambda: (lambda r: r if "temperature" in r else None)(rep(s.thing)))
            assert r["firmware_version"] == "1.0.0" and 0 <= r["temperature"] <= 50
        # the same firmware: a shadow delta is honoured by a simulated device
        target = specs[7].thing
        data.update_thing_shadow(thingName=target, payload=json.dumps({"state": {"desired": {"on": True}}}))
        poll(lambda: rep(target).get("on") is True)
        # ... and a job, like a flashed board
        iot = boto3.client("iot", **sandbox.boto3_kwargs())
        picked = [specs[1].thing, specs[25].thing, specs[49].thing]
        arns = [iot.describe_thing(thingName=t)["thingArn"] for t in picked]
        iot.create_job(jobId="fs50-config", targets=arns,
                       document=json.dumps({"operation": "config", "settings": {"refresh": 5000}}))
        for t in picked:
            ex = poll(lambda: (lambda e: e if e["status"] in ("SUCCEEDED", "FAILED") else None)(
                iot.describe_job_execution(jobId="fs50-config", thingName=t)["execution"]))
            assert ex["status"] == "SUCCEEDED" and ex["statusDetails"]["detailsMap"]["refresh"] == "5000"
        stats = runner.stats.summary()
    assert stats["devices"] == COUNT and stats["boots"] == COUNT


def test_simulate_without_sandbox_explains(tmp_path):
    r = subprocess.run([sys.executable, "-m", "fleetdesk", "fleet", "simulate", "--count", "3",
                        "--state-dir", str(tmp_path / "none")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert "no sandbox is running" in r.stderr and "fleetdesk sandbox up" in r.stderr


def test_simulate_cli_json_lines(sandbox, tmp_path):
    r = subprocess.run([sys.executable, "-m", "fleetdesk", "fleet", "simulate", "--count", "3", "--rate", "2",
                        "--duration", "4", "--json", "--state-dir", sandbox.state_dir,
                        "--fleet-dir", str(tmp_path / "fleet"), "--prefix", "cli3"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert lines and all({"online", "sent", "devices", "msg_per_s"} <= set(x) for x in lines)
    assert lines[-1]["devices"] == 3 and max(x["online"] for x in lines) == 3 and lines[-1]["sent"] > 0
