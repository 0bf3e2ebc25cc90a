"""Sandbox process lifecycle: persistence across restarts, bad state dirs/ports, broker restarts, CLI."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import boto3
import pytest

from fleetdesk.cloud.identity import create_device_identity
from fleetdesk.sandbox.child import start_sandbox, stop_sandbox

pytestmark = pytest.mark.slow


def _cli(*args, env=None, timeout=30):
    return subprocess.run([sys.executable, "-m", "fleetdesk.sandbox", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def _cli_inproc(capsys, *args) -> int:
    import argparse

    from fleetdesk.sandbox import cli

    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    ns = parser.parse_args(["sandbox", *args])
    return ns.func(ns)


def test_state_survives_restart_and_old_certs_still_connect(tmp_path, devices, monkeypatch, capsys):
    state = tmp_path / "state"
    proc, info = start_sandbox(state)
    try:
        iot = boto3.client("iot", **info.boto3_kwargs())
        ident = create_device_identity(iot, "persist-1", attributes={"line": "7"})
        group = iot.create_thing_group(thingGroupName="persist-group")
        iot.add_thing_to_thing_group(thingGroupName="persist-group", thingName="persist-1")
    finally:
        assert stop_sandbox(proc) == 0
    assert not (state / "endpoint.json").exists()

    proc, info2 = start_sandbox(state)
    try:
        assert info2.ca_file == info.ca_file and info2.aws_access_key_id == info.aws_access_key_id
        iot = boto3.client("iot", **info2.boto3_kwargs())
        assert iot.describe_thing(thingName="persist-1")["attributes"] == {"line": "7"}
        assert iot.describe_certificate(certificateId=ident.certificate_id)["certificateDescription"]["status"] == "ACTIVE"
        assert iot.list_attached_policies(target=ident.certificate_arn)["policies"][0]["policyName"]
        assert iot.list_things_in_thing_group(thingGroupName="persist-group")["things"] == ["persist-1"]
        assert iot.describe_thing_group(thingGroupName="persist-group")["thingGroupArn"] == group["thingGroupArn"]
        dev = devices(info2, ident)
        assert dev.connect(), dev.failure
        from awscrt import mqtt5

        assert dev.publish("dt/persist-1/env") in (mqtt5.PubackReasonCode.SUCCESS,
                                                   mqtt5.PubackReasonCode.NO_MATCHING_SUBSCRIBERS)
        # status / env of the running sandbox (in-process: the CLI functions themselves)
        monkeypatch.setenv("FLEETDESK_SANDBOX_DIR", str(state))
        assert _cli_inproc(capsys, "status", "--json") == 0
        assert json.loads(capsys.readouterr().out)["running"] is True
        assert _cli_inproc(capsys, "env") == 0
        out = capsys.readouterr().out
        assert f"export AWS_ENDPOINT_URL_IOT={info2.http_endpoint}" in out
        assert f"AWS_CA_BUNDLE={info2.ca_file}" in out
        # boto3 configured only through those exports (as the aws CLI would be)
        for key in [k for k in os.environ if k.startswith("AWS_")]:
            monkeypatch.delenv(key)
        for line in out.splitlines():
            key, value = line[len("export "):].split("=", 1)
            monkeypatch.setenv(key, value)
        assert boto3.client("iot").describe_thing(thingName="persist-1")["thingName"] == "persist-1"
        # a second sandbox on the same state dir is refused
        import asyncio

        from fleetdesk.errors import SandboxError
        from fleetdesk.sandbox.server import run_sandbox

        with pytest.raises(SandboxError, match="already running"):
            asyncio.run(run_sandbox(state, 0))
    finally:
        stop_sandbox(proc)
    assert _cli_inproc(capsys, "status", "--state-dir", str(state)) == 3


def test_sandbox_restarts_mosquitto_when_it_dies(tmp_path, devices):
    state = tmp_path / "state"
    proc, info = start_sandbox(state)
    try:
        iot = boto3.client("iot", **info.boto3_kwargs())
        ident = create_device_identity(iot, "phoenix")
        pid = int((state / "broker" / "mosquitto.pid").read_text())
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 20
        while "mosquitto restarted" not in (tmp_path / "state.log").read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "mosquitto restarted" in (tmp_path / "state.log").read_text()
        assert int((state / "broker" / "mosquitto.pid").read_text()) != pid
        dev = devices(info, ident)
        assert dev.connect(), dev.failure  # the authorization state was rebuilt from the registry
        iot.update_certificate(certificateId=ident.certificate_id, newStatus="REVOKED")
        assert dev.disconnected.wait(2.0)  # and the control client reconnected
    finally:
        stop_sandbox(proc)


def test_port_in_use_names_the_port(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        res = _cli("up", "--json", "--state-dir", str(tmp_path / "s"), "--port-base", str(port))
    assert res.returncode == 1 and res.stdout == ""
    assert f"port {port} is already in use" in res.stderr and "--port-base" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def _up_inproc(state, **kw):
    """run_sandbox in this process: the bad-input paths fail before anything is started."""
    import asyncio

    from fleetdesk.sandbox.server import run_sandbox

    asyncio.run(run_sandbox(state, 0, **kw))


def test_foreign_or_unknown_state_dir_is_refused_and_left_alone(tmp_path):
    from fleetdesk.errors import SandboxError

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "precious.txt").write_text("keep me")
    with pytest.raises(SandboxError, match="not a Fleetdesk sandbox state dir"):
        _up_inproc(foreign)
    assert sorted(p.name for p in foreign.iterdir()) == ["precious.txt"]

    future = tmp_path / "future"
    future.mkdir()
    (future / "VERSION").write_text("fleetdesk-sandbox 99\n")
    with pytest.raises(SandboxError, match="unknown version"):
        _up_inproc(future)

    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "VERSION").write_text("fleetdesk-sandbox 1\n")
    (corrupt / "registry.sqlite").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(SandboxError, match="registry"):
        _up_inproc(corrupt)
    assert (corrupt / "registry.sqlite").read_bytes() == b"this is not sqlite" * 100


def test_missing_mosquitto_says_how_to_install(tmp_path, monkeypatch):
    from fleetdesk.errors import SandboxError

    monkeypatch.setenv("FLEETDESK_MOSQUITTO", str(tmp_path / "no-such-mosquitto"))
    with pytest.raises(SandboxError) as ei:
        _up_inproc(tmp_path / "s")
    assert "mosquitto" in str(ei.value) and "apt-get install mosquitto" in str(ei.value)
    assert not (tmp_path / "s").exists()  # nothing was created


def test_env_without_a_running_sandbox_is_a_clear_error(tmp_path, capsys):
    from fleetdesk.errors import SandboxError

    with pytest.raises(SandboxError) as ei:
        _cli_inproc(capsys, "env", "--state-dir", str(tmp_path / "none"))
    assert "no sandbox is running" in str(ei.value) and "sandbox up" in str(ei.value)


def _lan_ip() -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))
            ip = s.getsockname()[0]
        except OSError:
            return None
    return None if ip.startswith("127.") else ip


def test_lan_host_for_real_boards(tmp_path, devices):
    ip = _lan_ip()
    if ip is None:
        pytest.skip("no non-loopback IPv4 address on this machine")
    proc, info = start_sandbox(tmp_path / "state", extra_args=["--host", ip])
    try:
        assert info.mqtt_host == ip
        iot = boto3.client("iot", **info.boto3_kwargs())
        assert iot.describe_endpoint(endpointType="iot:Data-ATS")["endpointAddress"] == ip
        dev = devices(info, create_device_identity(iot, "lan-1"))
        assert dev.connect(), dev.failure  # TLS verification on: the server cert names the LAN address
    finally:
        stop_sandbox(proc)
