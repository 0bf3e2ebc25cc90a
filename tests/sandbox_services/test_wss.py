"""MQTT over WebSockets + SigV4 with the real awsiotsdk client: right secret in, wrong secret or old date out."""

from __future__ import annotations

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


@pytest.mark.parametrize("case,status", [("ok", 101), ("wrong-secret", 403), ("expired", 403), ("unsigned", 403)])
def test_handshake_status(sandbox, case, status):
    import ssl

    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    secret = sandbox.aws_secret_access_key + ("x" if case == "wrong-secret" else "")
    date = dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=2) if case == "expired" else None
    path = "/mqtt" if case == "unsigned" else _signed_path(sandbox, secret, date)
    ctx = ssl.create_default_context(cafile=sandbox.ca_file)
    url = f"wss://localhost:{sandbox.ws_port}{path}"
    if status == 101:
        with connect(url, ssl=ctx, subprotocols=["mqtt"], open_timeout=10) as ws:
            assert ws.subprotocol == "mqtt"
        return
    with pytest.raises(InvalidStatus) as e:
        connect(url, ssl=ctx, subprotocols=["mqtt"], open_timeout=10)
    assert e.value.response.status_code == 403


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
    import ssl

    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    ctx = ssl.create_default_context(cafile=sandbox.ca_file)
    url = f"wss://localhost:{sandbox.ws_port}{_signed_path(sandbox, sandbox.aws_secret_access_key)}"
    with connect(url, ssl=ctx, subprotocols=["mqtt"], open_timeout=10) as ws:
        ws.send(b"\x30\x05\x00\x01ax!")  # a PUBLISH before CONNECT
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=10)
