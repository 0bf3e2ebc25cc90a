"""The button end to end in the sandbox: a flashed virtual board online as its thing; the CLI
(`fleetdesk boards press`) presses it through the board process's control channel; boto3 sees
btnCount 0 -> 1 in the shadow and the app (WebSockets + SigV4) gets devices/<thing>/events;
another thing can neither publish nor read that topic; a long press (board API) sends the
board back to Config mode."""

from __future__ import annotations

import asyncio
import json
import queue
import threading
import uuid

import pytest
from awscrt import mqtt5
from helpers_sandbox import Mqtt5, der, mtls_builder, poll

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

ALLOWED = (mqtt5.PubackReasonCode.SUCCESS, mqtt5.PubackReasonCode.NO_MATCHING_SUBSCRIBERS)


def _flashed_board(host, sandbox, iot, thing, tmp_path):
    """A virtual board whose flash holds the firmware bundle + the thing's config and certs."""
    from fleetdesk.boards import bundle
    from fleetdesk.cloud.identity import create_device_identity
    from fleetdesk.virtual.cli import _control
    from fleetdesk.virtual.registry import register
    from fleetdesk.virtual.spec import BoardSpec

    ident = create_device_identity(iot, thing)
    with open(sandbox.ca_file) as f:
        ca = der(f.read())
    cfg = {"thing_name": thing, "endpoint": sandbox.mqtt_host, "port": sandbox.mqtt_port, "region": sandbox.region}
    built = bundle.build_bundle(tmp_path / "bundle", chip="esp32").with_vfs_files({
        "/config.json": json.dumps(cfg).encode(), "/certs/ca.der": ca,
        "/certs/cert.der": der(ident.certificate_pem), "/certs/key.der": der(ident.private_key_pem, key=True)})
    board = host.start_board(BoardSpec(chip="esp32", name="btn", mac="24:0a:c4:5e:5e:5e"), tmp_path / "boards",
                             power_on=False)
    for offset, data in built.flash_args():
        board.flash.write(offset, data)
    # the control channel a `fleetdesk boards virtual` process serves, here on the host's loop
    server = host.call(asyncio.start_server(lambda r, w: _control(r, w, [board]), "127.0.0.1", 0))
    board.control = "tcp://127.0.0.1:%d" % server.sockets[0].getsockname()[1]
    register(board)
    host.reset(board)
    return board, server


def _reported(data, thing) -> dict:
    try:
        doc = json.loads(data.get_thing_shadow(thingName=thing)["payload"].read())
    except Exception:  # noqa: BLE001 - no shadow yet
        return {}
    return doc.get("state", {}).get("reported", {})


def _app_listener(sandbox, topic_filter: str):
    """The app's own MQTT connection (WebSockets, SigV4) collecting messages on a filter."""
    from awscrt import auth

    from fleetdesk.cloud.connection import Connection
    from fleetdesk.cloud.settings import ConnectionSettings

    got: queue.Queue = queue.Queue()
    s = ConnectionSettings(host=sandbox.mqtt_host, port=sandbox.ws_port, client_id=f"app-{uuid.uuid4().hex[:6]}",
                           ca_file=sandbox.ca_file, websockets=True, region=sandbox.region, clean_start=True,
                           credentials_provider=auth.AwsCredentialsProvider.new_static(
                               sandbox.aws_access_key_id, sandbox.aws_secret_access_key))
    loop = asyncio.new_event_loop()  # the Connection delivers on its loop: keep one running
    threading.Thread(target=loop.run_forever, daemon=True).start()

    async def start():
        conn = Connection(s)
        await conn.start()
        await conn.wait_connected(15)
        await conn.subscribe(topic_filter, lambda m: got.put((m.topic, m.json())))
        return conn

    return loop, asyncio.run_coroutine_threadsafe(start(), loop).result(30), got


def test_button_on_a_virtual_board_in_the_sandbox(sandbox, tmp_path, capsys):
    import boto3

    from fleetdesk.cli import main
    from fleetdesk.cloud.identity import create_device_identity
    from fleetdesk.virtual.host import BoardHost

    kw = sandbox.boto3_kwargs()
    iot, data = boto3.client("iot", **kw), boto3.client("iot-data", **kw)
    thing = f"btn-{uuid.uuid4().hex[:8]}"
    host = BoardHost()
    loop = conn = None
    others = []
    try:
        board, server = _flashed_board(host, sandbox, iot, thing, tmp_path)
        loop, conn, events = _app_listener(sandbox, f"devices/{thing}/events")
        poll(lambda: _reported(data, thing).get("btnCount") == 0, 60)
        assert "button on GPIO0" in board.console_text

        # short press from the CLI: btnCount 0 -> 1 in the shadow, the state on the events topic
        assert main(["boards", "press", board.url, "--json"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["ok"] and out["listening"] and out["pin"] == 0 and out["state"] == "running"
        topic, event = events.get(timeout=15)
        assert topic == f"devices/{thing}/events" and event["btnCount"] == 1 and event["on"] is False
        poll(lambda: _reported(data, thing).get("btnCount") == 1, 15)
        assert _reported(data, thing)["firmware_version"] == "1.0.0"

        # policy scoping: another thing may use its own events topic, not this one
        other = create_device_identity(iot, thing + "-o")
        dev = Mqtt5(mtls_builder(sandbox, other.certificate_pem, other.private_key_pem, other.thing_name))
        others.append(dev)
        assert dev.connect(), dev.failure
        forged = dev.publish(f"devices/{thing}/events", {"btnCount": 99}).puback.reason_code
        assert forged == mqtt5.PubackReasonCode.NOT_AUTHORIZED
        assert dev.publish(f"devices/{other.thing_name}/events", {"btnCount": 1}).puback.reason_code in ALLOWED
        assert dev.subscribe(f"devices/{thing}/events") == mqtt5.SubackReasonCode.NOT_AUTHORIZED
        with pytest.raises(queue.Empty):
            events.get(timeout=1.0)  # the forged event never reached the app

        # long press through the board API: back to Config mode, advertising over BLE
        result = host.call(board.press_button(3.5), timeout=30)
        assert result["listening"] is True
        poll(lambda: "config: waiting for BLE provisioning" in board.console_text, 30, 0.1)
        assert "button held 3 s: back to Config mode (BLE provisioning)" in board.console_text
        assert board.boots == 1 and board.state == "running"  # the firmware rebooted, the board did not
    finally:
        for dev in others:
            dev.stop()
        if conn is not None:
            asyncio.run_coroutine_threadsafe(conn.stop(), loop).result(20)
            loop.call_soon_threadsafe(loop.stop)
        host.close()


def test_press_refuses_what_has_no_button(tmp_path, capsys):
    from fleetdesk.cli import main

    assert main(["boards", "press", "socket://127.0.0.1:9"]) == 1
    err = capsys.readouterr().err
    assert "not a running virtual board" in err and "BOOT button" in err
