"""The cloud layer against the real sandbox: a device with its own cert, the app with its
privileged login (WebSockets + SigV4), boto3 control plane."""

from __future__ import annotations

import asyncio
import json
import uuid

import boto3
import pytest
from helpers_sandbox import connected_device

from fleetdesk.cloud.connection import Connection
from fleetdesk.cloud.errors import ControlPlaneError, ShadowConflict, ShadowRejected
from fleetdesk.cloud.session import CloudSession, app_settings
from fleetdesk.cloud.settings import ConnectionSettings
from fleetdesk.config import Profile
from fleetdesk.paths import write_private
from fleetdesk.store.telemetry import TelemetryStore

from .test_connection import wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
def profile(sandbox, monkeypatch):
    monkeypatch.setenv("FLEETDESK_SANDBOX_DIR", str(sandbox.state_dir))
    return Profile(state_dir=str(sandbox.state_dir))


@pytest.fixture
async def session(profile, tmp_path):
    s = CloudSession(profile, store=TelemetryStore(tmp_path / "tel.db", retention_days=None),
                     settings=app_settings(profile, ephemeral=True))
    try:
        yield s
    finally:
        await s.stop()


async def device(sandbox, tmp_path, name: str) -> Connection:
    conn, _ = await connected_device(sandbox, boto3.client("iot", **sandbox.boto3_kwargs()), tmp_path, name)
    return conn


async def test_telemetry_presence_shadow_and_rpc_end_to_end(sandbox, session, tmp_path):
    name = f"fd-{uuid.uuid4().hex[:8]}"
    dev = await device(sandbox, tmp_path, name)
    try:
        await session.start()
        fleet = session.fleet
        assert name in fleet.things
        # telemetry: stored before ack, applied to the fleet model
        for seq in range(5):
            await dev.publish(f"dt/{name}/env", {"temperature": 21.0 + seq, "humidity": 40, "seq": seq})
        await wait_for(lambda: session.store.count(name) == 5, 15)
        await wait_for(lambda: fleet.things[name].temperature == 25.0, 5)
        assert session.store.seq_report()[name]["missing"] == 0
        # RPC: the device answers on its own reply topic
        async def serve(msg):
            req = json.loads(msg.payload)
            await dev.publish(f"{name}/rpc/resp", {"id": req["id"], "result": {"fw_version": "1.0", "echo": req["args"]}})
        await dev.subscribe(f"{name}/rpc", serve)
        assert await session.rpc.call(name, "Sys.GetInfo", {"x": 1}) == {"fw_version": "1.0", "echo": {"x": 1}}
        # logs
        await dev.publish(f"{name}/logs", {"ts": 1795000000000, "level": "info", "msg": "booted", "mode": "normal"})
        await dev.publish(f"{name}/logs", b"not json")
        await wait_for(lambda: len(session.logs.recent(name)) == 2, 10)
        assert [(r.level, r.msg) for r in session.logs.recent(name)] == [("info", "booted"), ("?", "not json")]
        # shadow: desired from the app -> delta at the device -> reported back -> fleet firmware
        deltas = []
        await dev.subscribe(f"$aws/things/{name}/shadow/update/delta", lambda m: deltas.append(m.json()))
        with pytest.raises(ShadowRejected) as missing:
            await session.shadows.get(name)
        assert missing.value.code == 404
        acc = await session.shadows.update(name, desired={"on": True, "refresh": 5000})
        await wait_for(lambda: deltas, 10)
        assert deltas[0]["state"] == {"on": True, "refresh": 5000}
        await dev.publish(f"$aws/things/{name}/shadow/update",
                          {"state": {"reported": {"on": True, "refresh": 5000, "firmware_version": "1.0.3"}}})
        await wait_for(lambda: fleet.things[name].firmware == "1.0.3", 10)
        assert fleet.things[name].shadow_version == acc["version"] + 1
        # a stale edit is refused and reloaded, never applied blindly
        base = await session.shadows.get(name)
        await session.shadows.update(name, desired={"refresh": 2000})  # someone else
        with pytest.raises(ShadowConflict) as conflict:
            await session.shadows.update(name, desired={"on": False}, version=base["version"], base=base)
        assert conflict.value.current["version"] == base["version"] + 1
        assert "desired.refresh" in conflict.value.changed
        assert (await session.shadows.get(name))["state"]["desired"]["on"] is True
        # bulk action over several things; one bad document fails alone
        others = [f"{name}-b{i}" for i in range(3)]
        for o in others:
            await session.control.create_thing(o)
        res = await session.shadows.update_many([name, *others], desired={"reboot": 1})
        assert all(isinstance(v, dict) and v["state"]["desired"] == {"reboot": 1} for v in res.values())
        bad = await session.shadows.update_many(others[:1], desired={"x": {"a": {"b": {"c": {"d": {"e": {"f": 1}}}}}}})
        assert isinstance(bad[others[0]], ShadowRejected) and bad[others[0]].code == 400
        # presence: the device goes away -> offline
        await wait_for(lambda: fleet.things[name].online is True, 10)
    finally:
        await dev.stop()
    await wait_for(lambda: fleet.things[name].online is False, 15)


async def test_jobs_and_registry_through_control_plane(profile, sandbox):
    from fleetdesk.cloud.backend import get_cloud_backend

    cp = get_cloud_backend(profile).control_plane()
    tag = uuid.uuid4().hex[:6]
    things = [f"job-{tag}-{i}" for i in range(3)]
    for t in things:
        await cp.create_thing(t, {"batch": tag})
    await cp.create_group(f"empty-{tag}")
    with pytest.raises(ControlPlaneError, match="has no things"):
        await cp.create_job(f"j0-{tag}", {"op": "reboot"}, groups=[f"empty-{tag}"])
    with pytest.raises(ControlPlaneError, match="not valid JSON"):
        await cp.create_job(f"j1-{tag}", "{oops", things=things)
    await cp.create_group(f"g-{tag}")
    for t in things[:2]:
        await cp.add_to_group(t, f"g-{tag}")
    assert sorted(await cp.things_in_group(f"g-{tag}")) == things[:2]
    await cp.create_job(f"j2-{tag}", {"op": "reboot"}, groups=[f"g-{tag}"], things=[things[2]])
    execs = await cp.job_executions(f"j2-{tag}")
    assert sorted(e["thing"] for e in execs) == sorted(things)
    assert {e["status"] for e in execs} == {"QUEUED"}
    assert any(j["jobId"] == f"j2-{tag}" for j in await cp.list_jobs())
    await cp.cancel_execution(f"j2-{tag}", things[0])
    assert (await cp.describe_execution(f"j2-{tag}", things[0]))["status"] == "CANCELED"
    await cp.cancel_job(f"j2-{tag}")
    assert (await cp.describe_job(f"j2-{tag}"))["status"] in ("CANCELED", "COMPLETED")
    rows = [(t, st) async for t, st, _ in cp.watch_executions(f"j2-{tag}", interval=0.1)]
    assert sorted(t for t, _ in rows) == sorted(things) and (things[0], "CANCELED") in rows
    listed = {t["thingName"] for t in await cp.list_things()}
    assert set(things) <= listed


def test_cli_against_sandbox(profile, capsys):
    from fleetdesk.cli import main

    name = f"cli-{uuid.uuid4().hex[:6]}"
    assert main(["things", "create", name, "--attr", "room=lab", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["thingName"] == name
    assert main(["things", "list", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    mine = [r for r in rows if r["thingName"] == name]
    assert len(mine) == 1, f"{name} listed {len(mine)} times"
    assert mine[0]["attributes"] == {"room": "lab"}
    assert main(["shadow", "update", name, "--desired", '{"on": true}', "--json"]) == 0
    v = json.loads(capsys.readouterr().out)["version"]
    assert main(["shadow", "get", name, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["state"]["desired"] == {"on": True}
    assert main(["shadow", "update", name, "--desired", '{"on": false}', "--version", str(v - 1), "--json"]) == 3
    out = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert out["error"] == "conflict" and out["current"]["version"] == v
    assert main(["rpc", name, "Sys.GetInfo", "--timeout", "1"]) == 4  # nobody answers


def test_fleet_list_and_watch_cli(profile, sandbox, capsys):
    from fleetdesk.cli import main

    name = f"fl-{uuid.uuid4().hex[:6]}"
    data = boto3.client("iot-data", **sandbox.boto3_kwargs())
    boto3.client("iot", **sandbox.boto3_kwargs()).create_thing(thingName=name)
    data.update_thing_shadow(thingName=name, payload=json.dumps(
        {"state": {"reported": {"firmware_version": "2.1.0"}}}).encode())
    assert main(["fleet", "list", "--json", "--filter", name]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 1
    assert rows[0]["name"] == name and rows[0]["firmware"] == "2.1.0" and rows[0]["shadow_version"] == 1
    assert rows[0]["online"] is False  # never connected
    assert main(["fleet", "watch", "--filter", name, "--count", "1", "--interval", "0.2"]) == 0
    out = capsys.readouterr().out
    assert "THING" in out and name in out and "2.1.0" in out


async def test_claim_provisioning_then_connect(sandbox, tmp_path):
    from fleetdesk.cloud.provisioning import ProvisioningError, provision_by_claim
    from fleetdesk.sandbox.provisioning import setup_claim

    iot = boto3.client("iot", **sandbox.boto3_kwargs())
    claim = await asyncio.to_thread(setup_claim, iot)
    (tmp_path / "claim.crt").write_text(claim["certificatePem"])
    write_private(tmp_path / "claim.key", claim["privateKey"].encode())
    settings = ConnectionSettings(host=sandbox.mqtt_host, port=sandbox.mqtt_port, client_id="",
                                  ca_file=sandbox.ca_file, cert_file=str(tmp_path / "claim.crt"),
                                  key_file=str(tmp_path / "claim.key"))
    serial = uuid.uuid4().hex[:8].upper()
    ident = await provision_by_claim(settings, claim["templateName"], {"SerialNumber": serial, "MacAddress": "24:0a"})
    assert ident.thing_name == f"esp-{serial}" and len(ident.certificate_id) == 64
    assert "PRIVATE KEY" in ident.private_key_pem and "private_key_pem" not in repr(ident)
    # the new identity connects as its thing and may publish its telemetry
    (tmp_path / "dev.crt").write_text(ident.certificate_pem)
    write_private(tmp_path / "dev.key", ident.private_key_pem.encode())
    dev = Connection(ConnectionSettings(host=sandbox.mqtt_host, port=sandbox.mqtt_port, client_id=ident.thing_name,
                                        ca_file=sandbox.ca_file, cert_file=str(tmp_path / "dev.crt"),
                                        key_file=str(tmp_path / "dev.key"), clean_start=True))
    await dev.start()
    try:
        await dev.wait_connected(15)
        await dev.publish(f"dt/{ident.thing_name}/env", {"temperature": 20, "seq": 0})
    finally:
        await dev.stop()
    with pytest.raises(ProvisioningError) as bad:
        await provision_by_claim(settings, claim["templateName"], {"MacAddress": "no serial"})
    assert bad.value.status == 400


async def test_ota_job_document_reaches_device_with_working_url(profile, sandbox, tmp_path):
    import hashlib
    import ssl
    import urllib.request

    from fleetdesk.cloud.ota import create_ota_job
    from fleetdesk.cloud.backend import get_cloud_backend

    cp = get_cloud_backend(profile).control_plane()
    name = f"ota-{uuid.uuid4().hex[:6]}"
    image = b"FDPKG1\n" + uuid.uuid4().bytes * 1000 + b"END\n"
    dev = await device(sandbox, tmp_path, name)
    try:
        out = await create_ota_job(profile, cp, f"ota-{name}", image, "1.2.0", things=[name])
        assert out["document"]["sha256"] == hashlib.sha256(image).hexdigest()
        assert out["document"]["url"].startswith("${aws:iot:s3-presigned-url:")
        replies = []
        await dev.subscribe(f"$aws/things/{name}/jobs/start-next/accepted", lambda m: replies.append(m.json()))
        await dev.publish(f"$aws/things/{name}/jobs/start-next", {"clientToken": "t1"})
        await wait_for(lambda: replies, 10)
        doc = replies[0]["execution"]["jobDocument"]
        assert doc["version"] == "1.2.0" and doc["url"].startswith("https://")
        ctx = ssl.create_default_context(cafile=sandbox.ca_file)
        body = await asyncio.to_thread(lambda: urllib.request.urlopen(doc["url"], context=ctx, timeout=10).read())
        assert hashlib.sha256(body).hexdigest() == doc["sha256"]
    finally:
        await dev.stop()
    with pytest.raises(ControlPlaneError, match="bad firmware version"):
        await create_ota_job(profile, cp, "bad", image, "1.2 beta", things=[name])


async def test_app_logs_in_with_websockets_sigv4_as_on_aws(profile, sandbox):
    """The app's own login is the AWS path (WSS + SigV4 with the sandbox's keys, through the
    quota-enforcing front), never the sandbox's internal login; a wrong secret is refused."""
    from awscrt import auth

    from fleetdesk.cloud.errors import ConnectFailed

    app = app_settings(profile)
    assert (app.auth, app.port, app.username) == ("websockets", sandbox.ws_port, None)
    for secret, ok in ((sandbox.aws_secret_access_key, True), ("wrong-secret", False)):
        s = app_settings(profile, client_id=f"app-{uuid.uuid4().hex[:6]}", clean_start=True, initial_attempts=2,
                         min_reconnect_ms=100, credentials_provider=auth.AwsCredentialsProvider.new_static(
                             sandbox.aws_access_key_id, secret))
        conn = Connection(s)
        await conn.start()
        try:
            if ok:
                await conn.wait_connected(15)
                await conn.subscribe("$aws/events/presence/+/+", lambda m: None)
            else:
                with pytest.raises(ConnectFailed):
                    await conn.wait_connected(15)
        finally:
            await conn.stop()


async def test_telemetry_sent_while_the_app_is_closed_is_stored_at_next_start(sandbox, profile, tmp_path):
    """A persistent app session keeps its telemetry subscription across app restarts."""
    name = f"fd-{uuid.uuid4().hex[:8]}"
    client_id = f"fleetdesk-app-test-{uuid.uuid4().hex[:6]}"
    db = tmp_path / "persist.db"
    dev = await device(sandbox, tmp_path, name)

    def new_session() -> CloudSession:
        return CloudSession(profile, store=TelemetryStore(db, retention_days=None),
                            settings=app_settings(profile, client_id=client_id, session_expiry_sec=600))

    try:
        first = new_session()
        await first.start(load_registry=False)
        await dev.publish(f"dt/{name}/env", {"temperature": 20, "humidity": 40, "seq": 0})
        await wait_for(lambda: first.store.count(name) == 1, 15)
        await first.stop()
        for seq in range(1, 21):  # the app is closed: the broker queues these for its session
            await dev.publish(f"dt/{name}/env", {"temperature": 20, "humidity": 40, "seq": seq})
        second = new_session()
        try:
            await second.start(load_registry=False)
            await wait_for(lambda: second.store.count(name) == 21, 20)
            assert second.store.seq_report()[name]["missing"] == 0
        finally:
            await second.stop()
    finally:
        await dev.stop()


async def test_backend_wait_online_is_presence_since_a_time_with_cancel_and_a_clear_timeout(profile, sandbox,
                                                                                            tmp_path):
    """One definition of "online" for the station, claim and BLE: connected in presence, by a
    connection made after ``since``; a board never seen times out naming itself."""
    import threading
    import time

    from fleetdesk.cloud.backend import NotOnline, WaitCancelled, get_cloud_backend

    target = get_cloud_backend(profile).target()
    assert (target.endpoint, target.port) == (sandbox.mqtt_host, int(sandbox.mqtt_port))
    name = f"fd-{uuid.uuid4().hex[:8]}"
    dev = await device(sandbox, tmp_path, name)
    try:
        c = await asyncio.to_thread(target.wait_online, name, 20, poll=0.2)
        assert c["connected"]
        assert (await asyncio.to_thread(target.is_online, name, time.time() + 60))[0] is False  # not since then
        stop = threading.Event()
        stop.set()
        with pytest.raises(WaitCancelled):
            await asyncio.to_thread(target.wait_online, name, 20, since=time.time() + 60, cancel=stop)
    finally:
        await dev.stop()
    with pytest.raises(NotOnline, match="fd-never-seen did not come online within 1 s") as exc:
        await asyncio.to_thread(target.wait_online, "fd-never-seen", 1, poll=0.2)
    assert exc.value.last.get("connected") is False
