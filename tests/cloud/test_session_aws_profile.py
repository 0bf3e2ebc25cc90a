"""The dashboard's CloudSession on an AWS-kind profile, tested for real without an AWS account:
boto3's default chain and endpoints come from the environment `fleetdesk sandbox env` prints
(as tests/boards/test_aws_profile.py does for the flash station), the app's MQTT goes over
WebSockets signed with SigV4 through the AWS code path (awscrt default-chain credentials) to the
sandbox's WSS front; only the CA and port are overridden (``extra["app_ca_file"]``/``app_ws_port``)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import boto3
import pytest

from fleetdesk.cloud.backend import AwsBackend
from fleetdesk.cloud.session import CloudSession
from fleetdesk.config import Profile

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


@pytest.fixture
def sandbox_env(sandbox, monkeypatch):
    out = subprocess.run([sys.executable, "-m", "fleetdesk", "sandbox", "env", "--format", "json",
                          "--state-dir", sandbox.state_dir], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    env = json.loads(out.stdout)
    monkeypatch.delenv("FLEETDESK_SANDBOX_DIR", raising=False)  # only the profile may lead to the sandbox
    for k, v in env.items():
        if k.startswith("AWS_"):
            monkeypatch.setenv(k, v)
    return env


async def test_cloud_session_on_an_aws_profile_sees_things_shadows_and_telemetry(sandbox, sandbox_env, tmp_path):
    from fleetdesk.store.telemetry import TelemetryStore

    kw = sandbox.boto3_kwargs()
    iot, data = boto3.client("iot", **kw), boto3.client("iot-data", **kw)
    thing = f"aws-dash-{tmp_path.name[-8:].replace('_', '-')}"
    iot.create_thing(thingName=thing, attributePayload={"attributes": {"site": "lab"}})
    profile = Profile(name="aws-sbx", kind="aws", endpoint=sandbox.mqtt_host, region=sandbox.region,
                      credentials="default-chain",
                      extra={"app_ca_file": sandbox.ca_file, "app_ws_port": sandbox.ws_port})
    session = CloudSession(profile, store=TelemetryStore(tmp_path / "tel.db", retention_days=None))
    assert isinstance(session.backend, AwsBackend)
    assert session.conn.settings.websockets and session.conn.settings.port == sandbox.ws_port
    try:
        await session.start(connect_timeout=30)
        assert thing in session.fleet.things and session.fleet.things[thing].attributes == {"site": "lab"}
        await session.shadows.update(thing, desired={"on": True})
        doc = json.loads(data.get_thing_shadow(thingName=thing)["payload"].read())
        assert doc["state"]["desired"] == {"on": True}
        data.publish(topic=f"dt/{thing}/env", qos=1, payload=json.dumps({"temperature": 22.5, "humidity": 41, "seq": 1}))
        deadline = asyncio.get_running_loop().time() + 30
        while session.fleet.things[thing].temperature != 22.5:
            assert asyncio.get_running_loop().time() < deadline, "telemetry never reached the session over WSS"
            await asyncio.sleep(0.05)
    finally:
        await session.stop()


def test_aws_profile_app_connection_defaults_to_aws():
    s = AwsBackend(Profile(name="aws", kind="aws", endpoint="x-ats.iot.eu-west-1.amazonaws.com",
                           region="eu-west-1")).mqtt_settings()
    assert (s.host, s.port, s.websockets, s.ca_file) == ("x-ats.iot.eu-west-1.amazonaws.com", 443, True, None)
