"""The device-facing mTLS port: an emulation of AWS IoT Core's device gateway in front of mosquitto.

Hand-written (asyncio + ssl) because it *is* the emulator side: mosquitto with certificate
identities (``use_identity_as_username``) never asks a plugin about a CONNECT, so it cannot
refuse a client id the certificate's policy does not allow before that CONNECT displaces the
session holding the id, cannot just-in-time register a certificate of a registered CA, and
wants a CRL from every issuing CA. This front does what the gateway does, in order:

1. TLS with a client certificate required, verified against the sandbox CA and every
   registered CA (:mod:`fleetdesk.sandbox.ca_registry`); a CA that is not registered fails
   the handshake, an INACTIVE one is dropped right after it.
2. The first MQTT packet must be a CONNECT (3.1.1 or 5).
3. The certificate's registry status: ACTIVE goes on; a registered CA's unknown certificate
   is just-in-time registered as AWS does (PENDING_ACTIVATION, the
   ``$aws/events/certificates/registered/<caCertificateId>`` event, the CA's JITP template,
   then the connection is dropped: the device's reconnect is the one that gets in); anything
   else is refused with CONNACK "not authorized" (0x05 / MQTT5 0x87).
4. iot:Connect for the CONNECT's client id under the certificate's policies (policy
   variables resolved; :meth:`fleetdesk.sandbox.authz.Authorizer.allowed_certificate`):
   refused with CONNACK "not authorized" before mosquitto sees anything, so the session
   holding that id is untouched.
5. IoT Core's per-connection MQTT quotas (on by default, :mod:`fleetdesk.sandbox.quotas`): one
   CONNECT per second per client id (another is refused: MQTT5 CONNACK 0x9F "Connection rate
   exceeded", MQTT 3.1.1 the connection is closed), then publish rates, subscription counts,
   keep-alive and session expiry bounds on the bridged bytes
   (:class:`fleetdesk.sandbox.mqtt_quotas.ConnectionQuotas`).
6. Bridged (:func:`fleetdesk.sandbox.broker_bridge.bridge`) to mosquitto's loopback internal
   listener, logged in as the certificate's dynamic-security client with a password derived
   from the internal one (:func:`fleetdesk.sandbox.authz.certificate_login`). Revocation still
   drops a live connection: the authorizer disables that dynamic-security client.

The broker's log names the bridge's loopback address; :attr:`MtlsFront.links` maps it to the
device's address and certificate for presence.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import struct
import sys
import time
from typing import TYPE_CHECKING, Any

from cryptography import x509

from fleetdesk.errors import SandboxError
from fleetdesk.sandbox.ca_registry import CaRegistry, der_id, signed_by
from fleetdesk.sandbox.mqtt_wire import MqttProtocolError, connect_frame, decode_varint

if TYPE_CHECKING:
    from fleetdesk.sandbox.mqtt_link import MqttLink

log = logging.getLogger(__name__)

ENV_SWITCH = "FLEETDESK_SANDBOX_FRONT"
HANDSHAKE_TIMEOUT_S = 10.0
CONNECT_TIMEOUT_S = 10.0  # AWS: a connection that sends no CONNECT is closed
MAX_CONNECT = 149504
RESERVED_LOGINS = ("fleetdesk-internal", "fleetdesk-admin", "fleetdesk-app")


def enabled() -> bool:
    """Whether the sandbox puts this front on the device port: yes unless ``FLEETDESK_SANDBOX_FRONT=0``
    (then mosquitto's own mTLS listener serves devices, without the checks above)."""
    return os.environ.get(ENV_SWITCH, "1") != "0"


def connect_info(data: bytes) -> tuple[int, str, int] | None:
    """(protocol level, client id, packet length) of the CONNECT at the start of ``data``.

    Returns None while the packet is incomplete.

    Raises:
        MqttProtocolError: not a CONNECT, or a malformed one.
    """
    frame = connect_frame(data, MAX_CONNECT)
    if frame is None:
        return None
    body, consumed = frame
    try:
        pos = 2 + struct.unpack_from(">H", body, 0)[0]
        level = body[pos]
        pos += 4
        if level == 5:
            plen, pos = decode_varint(body, pos) or (0, pos)
            pos += plen
        n = struct.unpack_from(">H", body, pos)[0]
        client_id = body[pos + 2:pos + 2 + n].decode("utf-8")
    except (IndexError, struct.error, UnicodeDecodeError) as exc:
        raise MqttProtocolError(f"malformed CONNECT: {exc}") from exc
    return level, client_id, consumed


def connack_rate_exceeded(level: int) -> bytes:
    """MQTT5 CONNACK 0x9F "Connection rate exceeded"; MQTT 3.1.1 has no such code: nothing is
    sent (the connection is closed)."""
    return b"\x20\x03\x00\x9f\x00" if level == 5 else b""


def connack_refused(level: int) -> bytes:
    """CONNACK 'not authorized': MQTT5 reason 0x87 (no properties), 3.1.1 return code 0x05."""
    return b"\x20\x03\x00\x87\x00" if level == 5 else b"\x20\x02\x00\x05"


class MtlsFront:
    """The device gateway on the mTLS port.

    Args:
        ctx: the sandbox context (registry, CA, authorizer, internal MQTT login).
        host, port: where devices connect.
    """

    def __init__(self, ctx: Any, host: str, port: int) -> None:
        self.ctx = ctx
        self.host, self.port = host, port
        self.links: dict[str, tuple[str, str]] = {}  # bridge's "127.0.0.1:port" -> (device address, cert id)
        self.refused = 0
        self._server: asyncio.AbstractServer | None = None
        self._cas = CaRegistry(ctx.state_dir, ctx.region, ctx.account_id)
        self._cas_stamp: tuple | None = None
        self._loaded_cas: set[str] = set()
        self._sandbox_ca = x509.load_pem_x509_certificate(ctx.ca.ca_file.read_bytes())
        self.ssl = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ssl.minimum_version = ssl.TLSVersion.TLSv1_2
        self.ssl.load_cert_chain(str(ctx.ca.server_cert_file), str(ctx.ca.server_key_file))
        self.ssl.verify_mode = ssl.CERT_REQUIRED
        self.ssl.load_verify_locations(cafile=str(ctx.ca.ca_file))
        # called at every ClientHello (server_name None without SNI), before the client's
        # certificate is verified: CAs registered since the last connection are trusted
        self.ssl.sni_callback = lambda _sslobj, _name, _ctx: self._refresh_cas()
        self._link: MqttLink | None = None
        self._conns: set[asyncio.Task] = set()

    def _refresh_cas(self) -> None:
        """Trust every ACTIVE registered CA (added to the context's store as they are registered;
        one that later turns INACTIVE is refused after the handshake)."""
        try:
            st = os.stat(self._cas.path)
            stamp = (st.st_mtime_ns, st.st_size)
        except OSError:
            return
        if stamp == self._cas_stamp:
            return
        self._cas_stamp = stamp
        for ca in self._cas._read()["cas"].values():
            if ca["status"] == "ACTIVE" and ca["certificateId"] not in self._loaded_cas:
                try:
                    self.ssl.load_verify_locations(cadata=ca["certificatePem"])
                except (ssl.SSLError, ValueError) as exc:  # registration checked it; never break handshakes
                    log.warning("mtls front: CA %s not loadable: %r", ca["certificateId"][:12], exc)
                self._loaded_cas.add(ca["certificateId"])

    async def start(self) -> int:
        from fleetdesk.sandbox.mqtt_link import MqttLink

        try:
            self._server = await asyncio.start_server(self._accept, self.host, self.port, ssl=self.ssl,
                                                      ssl_handshake_timeout=HANDSHAKE_TIMEOUT_S)
        except OSError as exc:
            raise SandboxError(f"the device MQTT port {self.port} is already in use ({exc.strerror})",
                               "choose other ports with --port-base N") from exc
        self.port = self._server.sockets[0].getsockname()[1]
        self._link = MqttLink(self.ctx.internal_mqtt, "mtls-front", [], lambda t, p: None)
        await self._link.start()
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._conns):
            task.cancel()
        await asyncio.gather(*self._conns, return_exceptions=True)
        if self._link is not None:
            await self._link.stop()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._conns.add(task)
        try:
            await self._serve(reader, writer)
        except asyncio.CancelledError:  # the sandbox stops
            pass
        except (OSError, ssl.SSLError, asyncio.IncompleteReadError, asyncio.TimeoutError, MqttProtocolError) as exc:
            log.info("mtls front: %r", exc)
        finally:
            if task is not None:
                self._conns.discard(task)
            writer.close()

    def _refuse(self, why: str) -> None:
        self.refused += 1
        print(f"sandbox: refused {why}", file=sys.stderr, flush=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        address = f"{peer[0]}:{peer[1]}" if peer else ""
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        cert = x509.load_der_x509_certificate(der)
        ca = None
        if not signed_by(cert, self._sandbox_ca):
            ca = self._cas.issuer_of(cert)
            if ca is None or ca["status"] != "ACTIVE":
                self._refuse(f"a certificate of {'an INACTIVE' if ca else 'an unregistered'} CA from {address}")
                return
        data = b""
        while True:
            info = connect_info(data)
            if info is not None:
                break
            chunk = await asyncio.wait_for(reader.read(65536), CONNECT_TIMEOUT_S)
            if not chunk:
                return
            data += chunk
        level, client_id, end = info
        cert_id = der_id(cert)
        reg = self.ctx.registry
        try:
            view = reg.certificate_view(cert_id)
        except Exception:  # noqa: BLE001 - AwsError: not registered
            view = None
        if view is None:
            if ca is not None and ca["autoRegistrationStatus"] == "ENABLE":
                await self._jitp(cert, cert_id, ca)
                return  # AWS drops the first connection; the device reconnects
            self._refuse(f"{client_id!r} from {address}: certificate {cert_id[:12]}… is not registered")
            writer.write(connack_refused(level))
            await writer.drain()
            return
        ok, _thing, _ = self.ctx.authorizer.allowed_certificate(cert_id, client_id)
        if not ok:
            self._refuse(f"{client_id!r} from {address} (certificate {cert_id[:12]}…, {view.status}): "
                         "iot:Connect not allowed")
            writer.write(connack_refused(level))
            await writer.drain()
            return
        from fleetdesk.sandbox.authz import certificate_login
        from fleetdesk.sandbox.broker_bridge import bridge
        from fleetdesk.sandbox.mqtt_quotas import ConnectionQuotas

        quotas = self.ctx.extras.get("quotas")
        gate = None
        if quotas is not None:
            if not quotas.connect_allowed(client_id):
                self._refuse(f"{client_id!r} from {address}: more than one CONNECT a second for this client id")
                if refusal := connack_rate_exceeded(level):
                    writer.write(refusal)
                    await writer.drain()
                return
            gate = ConnectionQuotas(quotas.mqtt, level, client_id, quotas.count_mqtt, sessions=quotas.sessions)
            try:
                data = gate.connect(data, end)
            except (MqttProtocolError, IndexError, struct.error) as exc:
                raise MqttProtocolError(f"malformed CONNECT: {exc}") from exc

        login = certificate_login(self.ctx.internal_mqtt.password, cert_id, view.common_name)
        keys: list[str] = []

        def on_open(up: asyncio.StreamWriter) -> None:
            local = up.get_extra_info("sockname")
            key = f"{local[0]}:{local[1]}"
            keys.append(key)
            self.links[key] = (address, cert_id)

        async def recv() -> bytes | None:
            return await reader.read(65536)

        async def send(chunk: bytes) -> None:
            writer.write(chunk)
            await writer.drain()

        try:
            await bridge(self.ctx.internal_mqtt, login, recv, send, first=data, on_open=on_open, gate=gate)
        finally:
            for key in keys:
                self._forget(key)

    def _forget(self, key: str) -> None:
        # the broker logs the disconnect after the socket closes: keep the mapping a moment
        asyncio.get_running_loop().call_later(30, self.links.pop, key, None)

    async def _jitp(self, cert: x509.Certificate, cert_id: str, ca: dict) -> None:
        """Just-in-time registration of a registered CA's certificate, as AWS IoT does it."""
        from cryptography.hazmat.primitives import serialization

        from fleetdesk.sandbox.provisioning import ProvisioningError, apply_template

        cns = [a.value for a in cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)]
        cn = str(cns[0]) if cns else cert_id
        if cn in RESERVED_LOGINS:
            self._refuse(f"certificate {cert_id[:12]}…: its common name {cn!r} is reserved by the sandbox")
            return
        reg = self.ctx.registry
        pem = cert.public_bytes(serialization.Encoding.PEM).decode()
        reg.add_certificate(cert_id, pem, cn, cert.serial_number, "PENDING_ACTIVATION",
                            cert.not_valid_before_utc.timestamp(), cert.not_valid_after_utc.timestamp())
        await self.ctx.changed("certificate", "created", cert_id, status="PENDING_ACTIVATION")
        now = int(time.time() * 1000)
        assert self._link is not None
        self._link.publish(f"$aws/events/certificates/registered/{ca['certificateId']}", {
            "certificateId": cert_id, "caCertificateId": ca["certificateId"], "timestamp": now,
            "certificateStatus": "PENDING_ACTIVATION", "awsAccountId": self.ctx.account_id,
            "certificateRegistrationTimestamp": now})
        body = (ca.get("registrationConfig") or {}).get("templateBody")
        if not body:
            return  # no JITP template: the account activates it (e.g. a rule on the event)
        template = {"templateBody": body, "templateName": f"jitp-{ca['certificateId'][:12]}"}
        try:
            await apply_template(self.ctx, template, {}, cert_id)
        except ProvisioningError as exc:
            print(f"sandbox: JITP of certificate {cert_id[:12]}… failed: {getattr(exc, 'message', exc)}", file=sys.stderr, flush=True)


async def start(ctx: Any, host: str, port: int) -> MtlsFront:
    """Start the front on the device port (``ctx.extras["mtls_front"]``)."""
    front = MtlsFront(ctx, host, port)
    await front.start()
    ctx.extras["mtls_front"] = front
    return front
