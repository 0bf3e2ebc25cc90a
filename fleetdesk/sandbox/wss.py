"""MQTT over WebSockets with SigV4: the sandbox's public WSS endpoint (seed 004's path).

A TLS WebSocket server (sandbox server certificate) that checks the SigV4-presigned
``GET /mqtt?X-Amz-...`` of the upgrade request with botocore's signer against the
credentials ``fleetdesk sandbox env`` prints (service ``iotdevicegateway``; awscrt signs
``connection;host`` and appends ``X-Amz-Security-Token`` after signing). A wrong secret,
an expired or future date, or a bad scope is answered ``403`` before any MQTT byte flows.

Accepted connections are bridged to the broker's internal listener: the MQTT byte stream
rides in WebSocket binary frames; the client's CONNECT is rewritten to carry the
sandbox's privileged login (SigV4 holders are the app/operator, like an IAM principal with
iot:* rights) minus what no client may do on AWS: the bridged login's role denies
``$CONTROL/#`` and the service-only ``$aws`` topics (:mod:`fleetdesk.sandbox.reserved`);
the client id and everything else pass through unchanged.

IoT Core's per-connection quotas apply here as on the mTLS port (AWS applies them to every
client, SigV4 or certificate): one CONNECT per second per client id, then the publish rates,
subscription counts, keep-alive and session-expiry bounds of
:class:`fleetdesk.sandbox.mqtt_quotas.ConnectionQuotas` on the bridged bytes, counted per
client id for ``sandbox status --json``.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from typing import TYPE_CHECKING, Any

from fleetdesk.errors import SandboxError
from fleetdesk.sandbox.mqtt_wire import MqttProtocolError, connect_frame, decode_varint, mqtt_string, packet
from fleetdesk.sandbox.presign import PresignError, verify

if TYPE_CHECKING:
    from websockets.asyncio.server import Server

log = logging.getLogger(__name__)

SERVICE = "iotdevicegateway"
PORT_OFFSET = 4  # port_base + 4 (the core uses +0..+3)


def rewrite_connect(data: bytes, username: str, password: str) -> tuple[bytes, int] | None:
    """Replace the login of an MQTT 3.1.1/5 CONNECT at the start of ``data``.

    Returns:
        (new packet, bytes consumed from ``data``), or None when the packet is incomplete.

    Raises:
        MqttProtocolError: the data does not start with a CONNECT.
    """
    frame = connect_frame(data)
    if frame is None:
        return None
    body, end = frame
    try:
        pos = 2 + struct.unpack_from(">H", body, 0)[0]
        level, flags = body[pos], body[pos + 1]
        pos += 4  # level, flags, keep-alive
        if level == 5:
            plen, pos = decode_varint(body, pos) or (0, pos)
            pos += plen
        pos += 2 + struct.unpack_from(">H", body, pos)[0]  # client id
        if flags & 0x04:  # will
            if level == 5:
                wlen, pos = decode_varint(body, pos) or (0, pos)
                pos += wlen
            pos += 2 + struct.unpack_from(">H", body, pos)[0]
            pos += 2 + struct.unpack_from(">H", body, pos)[0]
    except (IndexError, struct.error, TypeError) as exc:
        raise MqttProtocolError(f"malformed CONNECT: {exc}") from exc
    flag_pos = 2 + struct.unpack_from(">H", body, 0)[0] + 1
    new_body = bytearray(body[:pos])
    new_body[flag_pos] = flags | 0xC0
    new_body += mqtt_string(username) + mqtt_string(password)
    return packet(0x10, bytes(new_body)), end


class WssFront:
    """The SigV4-checking WebSocket server.

    Args:
        ctx: the sandbox context (credentials, region, internal MQTT login, server TLS).
        host: bind address.
        port: port (0 = any free one).
    """

    def __init__(self, ctx: Any, host: str = "127.0.0.1", port: int = 0) -> None:
        self.ctx = ctx
        self.host, self.port = host, port
        self._server: Server | None = None
        self.refused = 0

    def _secret_for(self, access_key: str) -> str | None:
        creds = self.ctx.credentials or {}
        if access_key == creds.get("aws_access_key_id"):
            return creds.get("aws_secret_access_key")
        return None

    def check(self, path: str, headers: Any) -> str | None:
        """None if the upgrade request's presigned URL is valid, else the reason."""
        route, _, query = path.partition("?")
        if route != "/mqtt":
            return f"unknown path {route}"
        try:
            verify("GET", f"https://{headers.get('Host', '')}", route, query, dict(headers.raw_items()),
                   self._secret_for, service=SERVICE, region=self.ctx.region)
        except PresignError as exc:
            return str(exc)
        return None

    async def start(self) -> int:
        from websockets.asyncio.server import serve
        from websockets.typing import Subprotocol

        def process_request(connection, request):
            reason = self.check(request.path, request.headers)
            if reason is not None:
                self.refused += 1
                log.info("wss: refused %s: %s", connection.remote_address, reason)
                return connection.respond(403, f"Forbidden: {reason}\n")
            return None

        try:
            self._server = await serve(
                self._bridge, self.host, self.port, ssl=self.ctx.server_ssl, process_request=process_request,
                subprotocols=[Subprotocol("mqtt")], compression=None, max_size=None, ping_interval=None,
                server_header=None)
        except OSError as exc:
            raise SandboxError(f"the MQTT-over-WebSockets port {self.port} is already in use ({exc.strerror})",
                               "choose other ports with --port-base N") from exc
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def _bridge(self, ws) -> None:
        from websockets.exceptions import ConnectionClosed

        from fleetdesk.sandbox.authz import derived_login
        from fleetdesk.sandbox.broker_bridge import bridge

        async def recv() -> bytes | None:
            try:
                frame = await ws.recv()
            except ConnectionClosed:
                return None
            return frame if isinstance(frame, bytes) else frame.encode()

        async def send(chunk: bytes) -> None:
            await ws.send(chunk)

        try:
            opened = await self._open(recv, send)
        except (MqttProtocolError, asyncio.TimeoutError, ConnectionClosed) as exc:
            log.info("wss: %r", exc)
            opened = None
        if opened is None:
            await ws.close()
            return
        data, gate = opened
        im = self.ctx.internal_mqtt
        try:
            if not await bridge(im, derived_login(im.password, "app"), recv, send, first=data, gate=gate):
                await ws.close(1011, "broker unreachable")
                return
        except ConnectionClosed:
            return
        await ws.close()

    async def _open(self, recv, send) -> tuple[bytes, Any] | None:
        """Read the client's CONNECT and apply IoT Core's per-connection quotas to it, as the mTLS
        front does (:mod:`fleetdesk.sandbox.mqtt_quotas`): (the adjusted first bytes, the gate for
        the rest), or None when the connection ends here (a CONNECT over the client id's rate)."""
        from fleetdesk.sandbox.mqtt_quotas import ConnectionQuotas
        from fleetdesk.sandbox.mtls_front import CONNECT_TIMEOUT_S, connack_rate_exceeded, connect_info

        data = b""
        while (info := connect_info(data)) is None:
            chunk = await asyncio.wait_for(recv(), CONNECT_TIMEOUT_S)
            if not chunk:
                return None
            data += chunk
        level, client_id, end = info
        quotas = self.ctx.extras.get("quotas")
        if quotas is None:
            return data, None
        if not quotas.connect_allowed(client_id):
            self.refused += 1
            log.info("wss: refused %r: more than one CONNECT a second for this client id", client_id)
            if refusal := connack_rate_exceeded(level):
                await send(refusal)
            return None
        gate = ConnectionQuotas(quotas.mqtt, level, client_id, quotas.count_mqtt, sessions=quotas.sessions)
        try:
            return gate.connect(data, end), gate
        except (IndexError, struct.error) as exc:
            raise MqttProtocolError(f"malformed CONNECT: {exc}") from exc

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


async def start(ctx: Any) -> WssFront:
    """Start the WSS front and make it the sandbox's advertised ``ws_port``."""
    from fleetdesk.sandbox.server import is_loopback

    port = ctx.port_base + PORT_OFFSET if ctx.port_base else 0
    # loopback unless --host names a device-facing address (then, like the mTLS port, all interfaces)
    front = WssFront(ctx, "127.0.0.1" if is_loopback(ctx.mqtt_host) else "0.0.0.0", port)
    ctx.ws_public_port = await front.start()
    ctx.extras["wss"] = front
    return front
