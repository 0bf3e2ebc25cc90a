"""A crash (SIGKILL) of the sandbox loses no shadow update that was acknowledged as accepted; jobs persist too."""

from __future__ import annotations

import json
import os
import signal
import uuid
from pathlib import Path

import boto3
import pytest

from fleetdesk.cloud.identity import create_device_identity
from fleetdesk.sandbox.child import start_sandbox, stop_sandbox

from .conftest import mtls_builder

pytestmark = pytest.mark.slow


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _kill9(proc) -> None:
    """SIGKILL the sandbox like a crash, and its mosquitto child (which would otherwise linger)."""
    kids = _children(proc.pid)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    for kid in kids:
        try:
            os.kill(kid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if proc.stdout:
        proc.stdout.close()


def test_crash_restart_keeps_every_accepted_update(tmp_path, clients):
    state = tmp_path / "state"
    proc, info = start_sandbox(state)
    try:
        iot = boto3.client("iot", **info.boto3_kwargs())
        thing = f"rs-{uuid.uuid4().hex[:6]}"
        ident = create_device_identity(iot, thing)
        arn = iot.describe_thing(thingName=thing)["thingArn"]
        iot.create_job(jobId="persist-me", targets=[arn], document=json.dumps({"operation": "reboot"}))
        dev = clients(mtls_builder(info, ident.certificate_pem, ident.private_key_pem, thing))
        assert dev.connect()
        base = f"$aws/things/{thing}/shadow"
        assert dev.subscribe(base + "/update/accepted") < 128
        for i in range(1, 31):
            dev.publish(base + "/update", {"state": {"reported": {"n": i}}, "clientToken": f"c{i}"})
        last = None
        for _ in range(30):
            last = dev.expect(base + "/update/accepted")
        assert last["clientToken"] == "c30" and last["version"] == 30
        dev.stop()
        _kill9(proc)  # crash right after the last "accepted"

        proc, info = start_sandbox(state)
        data = boto3.client("iot-data", **info.boto3_kwargs())
        doc = json.loads(data.get_thing_shadow(thingName=thing)["payload"].read())
        assert doc["version"] == 30 and doc["state"]["reported"] == {"n": 30}
        iot = boto3.client("iot", **info.boto3_kwargs())
        execs = iot.list_job_executions_for_thing(thingName=thing)["executionSummaries"]
        assert [(e["jobId"], e["jobExecutionSummary"]["status"]) for e in execs] == [("persist-me", "QUEUED")]
    finally:
        stop_sandbox(proc)


def test_services_reconnect_after_the_broker_restarts(tmp_path, clients):
    import time

    proc, info = start_sandbox(tmp_path / "state")
    try:
        iot = boto3.client("iot", **info.boto3_kwargs())
        thing = f"br-{uuid.uuid4().hex[:6]}"
        ident = create_device_identity(iot, thing)
        broker = _children(proc.pid)
        assert broker, "no mosquitto child"
        os.kill(broker[0], signal.SIGKILL)  # the sandbox restarts mosquitto; the services must re-link
        dev = clients(mtls_builder(info, ident.certificate_pem, ident.private_key_pem, thing))
        deadline = time.monotonic() + 30
        while not dev.connect(timeout=10):
            assert time.monotonic() < deadline, "device could not reconnect after the broker restart"
            dev.stop()
            dev = clients(mtls_builder(info, ident.certificate_pem, ident.private_key_pem, thing))
            time.sleep(0.5)
        base = f"$aws/things/{thing}/shadow"
        assert dev.subscribe(base + "/update/accepted") < 128
        for _ in range(60):  # the shadow service answers again once its link is back
            dev.publish(base + "/update", {"state": {"reported": {"up": True}}})
            try:
                assert dev.expect(base + "/update/accepted", timeout=0.5)["state"]["reported"] == {"up": True}
                break
            except TimeoutError:
                continue
        else:
            raise AssertionError("shadow service did not come back after the broker restart")
    finally:
        stop_sandbox(proc)
