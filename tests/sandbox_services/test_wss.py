"""MQTT over WebSockets + SigV4 with the real awsiotsdk client: right secret in, wrong secret or old date out."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from pathlib import Path

import pytest

from fleetdesk.sandbox.wss import rewrite_connect

pytestmark = pytest.mark.slow


def wss_builder(info, secret: str, client_id: str, signing_date: dt.datetime | None = None,
                endpoint: str = "localhost"):
    from awscrt import auth
    from awsiot import mqtt5_client_builder

    creds = auth.AwsCredentialsProvider.new_static(info.aws_access_key_id, secret)

    def build(**callbacks):
        common = dict(endpoint=endpoint, port=info.ws_port, ca_bytes=Path(info.ca_file).read_bytes(),
                      client_id=client_id, clean_start=True, min_reconnect_delay_ms=5000,
                      max_reconnect_delay_ms=10000, **callbacks)
        if signing_date is None:
            return mqtt5_client_builder.websockets_with_default_aws_signing(
                region=info.region, credentials_provider=creds, **common)

        def transform(args, **kw):  # like the SDK's default signing, but dated in the past
            cfg = auth.AwsSigningConfig(
                algorithm=auth.AwsSigningAlgorithm.V4, signature_type=auth.AwsSignatureType.HTTP_REQUEST_QUERY_PARAMS,
                credentials_provider=creds, region=info.region, service="iotdevicegateway",
                omit_session_token=True, date=signing_date)
            auth.aws_sign_request(args.http_request, cfg).add_done_callback(lambda f: args.set_done(f.exception()))
        return mqtt5_client_builder.websockets_with_custom_handshake(transform, **common)
    return build


@pytest.mark.parametrize("endpoint", ["localhost", "127.0.0.1"])
def test_right_secret_connects_with_app_rights(sandbox, clients, iot, data, endpoint):
    app = clients(wss_builder(sandbox, sandbox.aws_secret_access_key, f"app-{uuid.uuid4().hex[:6]}",
                              endpoint=endpoint))
    assert app.connect(), app.failure
    thing = f"wss-{uuid.uuid4().hex[:6]}"
    iot.create_thing(thingName=thing)
    assert app.subscribe(f"$aws/things/{thing}/shadow/update/documents") < 128
    assert app.subscribe("dt/+/env") < 128
    data.update_thing_shadow(thingName=thing, payload=b'{"state":{"desired":{"on":true}}}')
    assert app.expect(f"$aws/things/{thing}/shadow/update/documents")["current"]["version"] == 1
    app.publish(f"dt/{thing}/env", {"temperature": 21})
    assert app.expect(f"dt/{thing}/env") == {"temperature": 21}


@pytest.mark.parametrize("case", ["wrong-secret", "expired"])
def test_bad_signature_refused_before_mqtt(sandbox, clients, case):
    secret = sandbox.aws_secret_access_key + ("x" if case == "wrong-secret" else "")
    date = dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=2) if case == "expired" else None
    c = clients(wss_builder(sandbox, secret, f"bad-{uuid.uuid4().hex[:6]}", date))
    assert c.connect() is False
    assert not c.connected.is_set()


def _signed_path(info, secret, date=None):
    from awscrt import auth, http

    req = http.HttpRequest("GET", "/mqtt", http.HttpHeaders([("Host", f"localhost:{info.ws_port}"),
                                                                ("Connection", "Upgrade")]))
    cfg = auth.AwsSigningConfig(
        algorithm=auth.AwsSigningAlgorithm.V4, signature_type=auth.AwsSignatureType.HTTP_REQUEST_QUERY_PARAMS,
        credentials_provider=auth.AwsCredentialsProvider.new_static(info.aws_access_key_id, secret),
        region=info.region, service="iotdevicegateway", omit_session_token=True, **({"date": date} if date else {}))
    return auth.aws_sign_request(req, cfg).result(5).path


def _upgrade(info, path: str, then=None):
    """Open ``wss://localhost:<ws_port><path>`` with websockets' asyncio client and run ``then(ws)``.

    Not websockets' sync client: it reads the TLS socket in a background thread while the caller's
    thread writes the upgrade request, and Python's SSL sockets are not safe for that. With TLS 1.3
    the server's session tickets arrive just then, and about 1 upgrade in 100 is lost (the server
    never sees the request; the client times out "waiting for handshake response"). One asyncio
    task owns the TLS object here.
    """
    import ssl

    from websockets.asyncio.client import connect

    async def run():
        ctx = ssl.create_default_context(cafile=info.ca_file)
        async with connect(f"wss://localhost:{info.ws_port}{path}", ssl=ctx, subprotocols=["mqtt"],
                           open_timeout=10) as ws:
            return await then(ws) if then else ws.subprotocol

    return asyncio.run(run())


@pytest.mark.parametrize("case,status", [("ok", 101), ("wrong-secret", 403), ("expired", 403), ("unsigned", 403)])
def test_handshake_status(sandbox, case, status):
    from websockets.exceptions import InvalidStatus

    secret = sandbox.aws_secret_access_key + ("x" if case == "wrong-secret" else "")
    date = dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=2) if case == "expired" else None
    path = "/mqtt" if case == "unsigned" else _signed_path(sandbox, secret, date)
    if status == 101:
        assert _upgrade(sandbox, path) == "mqtt"
        return
    with pytest.raises(InvalidStatus) as e:
        _upgrade(sandbox, path)
    assert e.value.response.status_code == 403


def test_every_upgrade_of_a_burst_is_answered(sandbox):
    """40 upgrades at once, half unsigned: each gets its own answer (403 or 101), none is left waiting."""
    import ssl

    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus

    signed = _signed_path(sandbox, sandbox.aws_secret_access_key)
    ctx = ssl.create_default_context(cafile=sandbox.ca_file)

    async def one(path: str) -> int:
        try:
            async with connect(f"wss://localhost:{sandbox.ws_port}{path}", ssl=ctx, subprotocols=["mqtt"],
                               open_timeout=20):
                return 101
        except InvalidStatus as exc:
            return exc.response.status_code

    async def burst():
        return await asyncio.gather(*(one("/mqtt" if i % 2 else signed) for i in range(40)))

    assert asyncio.run(burst()) == [403 if i % 2 else 101 for i in range(40)]


def test_rewrite_connect_v311_and_v5():
    # build a v3.1.1 CONNECT with username+password "u"/"p" and client id "cid"
    body = b"\x00\x04MQTT\x04\xc2\x00\x3c" + b"\x00\x03cid" + b"\x00\x01u" + b"\x00\x01p"
    pkt = b"\x10" + bytes([len(body)]) + body
    out, used = rewrite_connect(pkt + b"\xc0\x00", "admin", "secret")
    assert used == len(pkt)
    assert out.endswith(b"\x00\x05admin\x00\x06secret") and b"\x00\x03cid" in out
    # v5 with properties, a will, and no login
    body5 = (b"\x00\x04MQTT\x05\x04\x00\x3c" + b"\x02\x21\x00" + b"\x00\x02c5" + b"\x00" + b"\x00\x01w"
             + b"\x00\x02xy")
    pkt5 = b"\x10" + bytes([len(body5)]) + body5
    out5, _ = rewrite_connect(pkt5, "a", "b")
    assert out5[2 + 7] & 0xC0 == 0xC0 and out5.endswith(b"\x00\x02xy\x00\x01a\x00\x01b")
    assert rewrite_connect(pkt5[:5], "a", "b") is None


def test_non_connect_first_packet_closes_the_bridge(sandbox):
    from websockets.exceptions import ConnectionClosed

    async def publish_first(ws):
        await ws.send(b"\x30\x05\x00\x01ax!")  # a PUBLISH before CONNECT
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 10)

    _upgrade(sandbox, _signed_path(sandbox, sandbox.aws_secret_access_key), publish_first)
