"""Broker authorization: registry + policies -> mosquitto dynamic-security, CRL and kicks.

- Each certificate attached to a thing is a dynamic-security client (username = the cert's
  CN, which mosquitto takes from the cert via ``use_identity_as_username``), bound to the
  thing name as client id, with one role holding the topic ACLs of its policies.
  A wrong client id therefore gets no rights (checked on mosquitto 2.0.11).
- Certificates that are not ACTIVE are in the CRL (refused at the TLS handshake after a
  SIGHUP) and their dynsec client is disabled (which drops a live connection at once).
- iot:Connect is checked on each connection line of the broker's log; a connection the
  policies refuse (wrong client id, no thing, no Connect permission) is kicked by taking
  its client id over with an internal client, and is never reported as a ClientEvent.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import os
import sys
import struct
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from fleetdesk.sandbox.awserror import AwsError
from fleetdesk.sandbox.broker import RawConnection
from fleetdesk.sandbox.context import ClientEvent, SandboxContext
from fleetdesk.sandbox.policy import may_connect, topic_acls
from fleetdesk.sandbox.reserved import deny_acls

if TYPE_CHECKING:
    import aiomqtt

log = logging.getLogger(__name__)

CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
INTERNAL_ROLE = "fleetdesk-internal"
ADMIN_ROLE = "fleetdesk-admin"
APP_ROLE = "fleetdesk-app"
DEVICE_CN_PREFIX = "fleetdesk-device-"


def password_hash(password: str) -> tuple[str, str, int]:
    """(hash, salt, iterations) in the dynamic-security plugin's format (PBKDF2-SHA512)."""
    salt = os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, 101, 64)
    return base64.b64encode(digest).decode(), base64.b64encode(salt).decode(), 101


def derived_login(internal_password: str, purpose: str) -> tuple[str, str]:
    """(username, password) of the sandbox's other broker logins, derived from the internal one.

    ``"admin"``: the authorizer's own, the only login with ``$CONTROL/#`` (mosquitto's
    administration); ``"app"``: what SigV4 WebSocket clients are bridged as (every topic, but
    not ``$CONTROL`` nor the service-only ``$aws`` topics).
    """
    digest = hmac.new(internal_password.encode(), f"fleetdesk-{purpose}".encode(), hashlib.sha256).hexdigest()
    return f"fleetdesk-{purpose}", digest


def certificate_login(internal_password: str, cert_id: str, cn: str) -> tuple[str, str]:
    """(username, password) the mTLS front logs a certificate in with on the internal listener:
    the certificate's dynamic-security client (username = CN) and a password derived from the
    internal one (nobody outside the sandbox process can compute it)."""
    return cn, derived_login(internal_password, f"cert-{cert_id}")[1]


def _allow_all(topics) -> list[dict]:
    return [{"acltype": acltype, "topic": topic, "allow": True, "priority": 0}
            for topic in topics
            for acltype in ("publishClientSend", "publishClientReceive", "subscribePattern", "unsubscribePattern")]


def _internal_role() -> dict:
    """The services' role: every topic including ``$aws/#``; never ``$CONTROL/#``."""
    deny = [{"acltype": a, "topic": "$CONTROL/#", "allow": False, "priority": 1000}
            for a in ("publishClientSend", "publishClientReceive", "subscribePattern")]
    return {"rolename": INTERNAL_ROLE, "acls": deny + _allow_all(("#", "$aws/#", "$SYS/#"))}


def _admin_role() -> dict:
    return {"rolename": ADMIN_ROLE, "acls": _allow_all((CONTROL_TOPIC, CONTROL_TOPIC + "/response"))}


def _app_role() -> dict:
    return {"rolename": APP_ROLE, "acls": deny_acls() + _allow_all(("#", "$aws/#"))}


def _role_name(cert_id: str, acls: list[dict]) -> str:
    digest = hashlib.sha256(json.dumps(acls, sort_keys=True).encode()).hexdigest()[:12]
    return f"cert-{cert_id[:16]}-{digest}"


class Authorizer:
    """Keeps mosquitto's dynamic-security state and CRL in step with the registry."""

    def __init__(self, ctx: SandboxContext) -> None:
        self.ctx = ctx
        self.applied: dict[str, tuple] = {}  # cn -> (clientid, rolename, disabled)
        self.roles: dict[str, list[dict]] = {}
        self.crl_serials: set[int] = set()
        self.sessions: dict[str, ClientEvent | None] = {}  # client id -> accepted event (None: internal/kicked)
        self._client: aiomqtt.Client | None = None
        self._client_cm: aiomqtt.Client | None = None
        self._responses: asyncio.Queue | None = None
        self._reader: asyncio.Task | None = None
        self._lock = asyncio.Lock()
        self._kicking: set[str] = set()
        self._dynsec_file: Path | None = None
        self._tasks: set[asyncio.Task] = set()
        self.cn_of: dict[str, str] = {}  # certificate id -> CN

    # -- desired state ------------------------------------------------------------------
    def _desired_one(self, cert_id: str) -> tuple[str, tuple] | None:
        """(cn, (clientid, acls, disabled, cert_id)) for a cert with rights, else None."""
        reg = self.ctx.registry
        try:
            view = reg.certificate_view(cert_id)
        except AwsError:  # deleted meanwhile
            return None
        self.cn_of[cert_id] = view.common_name
        if not view.things:
            # a cert attached to no thing (e.g. a fleet-provisioning claim cert): only the
            # policy statements without thing variables apply, any client id it may connect as
            claim_acls = topic_acls(view.policy_documents, None, None)
            if claim_acls:
                return view.common_name, (None, claim_acls + deny_acls(), view.status != "ACTIVE", cert_id)
            return None
        acls: list[dict] = []
        for thing in view.things:
            for acl in topic_acls(view.policy_documents, thing, thing, self._thing_info(thing)):
                if acl not in acls:
                    acls.append(acl)
        clientid = view.things[0] if len(view.things) == 1 else None
        return view.common_name, (clientid, acls + deny_acls(), view.status != "ACTIVE", cert_id)

    def _thing_info(self, thing: str | None) -> dict | None:
        """{"type", "attributes"} of a thing for the policy variables (None if unknown)."""
        if not thing:
            return None
        try:
            d = self.ctx.registry.describe_thing(thing)
        except AwsError:
            return None
        return {"type": d.get("thingTypeName"), "attributes": d.get("attributes") or {}}

    def _desired(self, cert_ids: list[str] | None = None) -> dict[str, tuple]:
        """cn -> (clientid, acls, disabled, cert_id) for the given certs (default: all) with rights."""
        out = {}
        for cert_id in self.ctx.registry.certificate_ids() if cert_ids is None else cert_ids:
            one = self._desired_one(cert_id)
            if one:
                out[one[0]] = one[1]
        return out

    def affected_certificates(self, change) -> list[str] | None:
        """Certificate ids whose rights a registry change may alter (None: maybe all)."""
        reg = self.ctx.registry
        kind, action, name, details = change.kind, change.action, change.name, change.details or {}
        try:
            if kind == "certificate":
                return [name]
            if kind == "principal":
                cid = reg._cert_id_from_arn(name)
                return [cid] if cid else None
            if kind == "thing" and action in ("created", "deleted"):
                return []
            if kind == "thing" and action == "updated":  # type/attributes feed policy variables
                return reg.certificates_of_things([name])
            if kind == "policy" and action == "created":
                return []
            if kind == "policy" and action in ("attached", "detached"):
                target = details.get("target", "")
                cid = reg._cert_id_from_arn(target)
                if cid:
                    return [cid]
                prefix = reg.arn("thinggroup", "")
                if target.startswith(prefix):
                    return reg.certificates_of_things(reg.things_in_group(target[len(prefix):], recursive=True))
                return None
            if kind == "thing_group" and (action == "created" or details.get("properties")):
                return []
            if kind == "thing_group" and action == "updated" and details.get("thing"):
                thing = details["thing"]
                thing_prefix = reg.arn("thing", "")
                thing = thing[len(thing_prefix):] if thing.startswith(thing_prefix) else thing
                return reg.certificates_of_things([thing])
        except AwsError:
            return None
        return None

    def write_dynsec_file(self, path: Path) -> None:
        """Write the whole dynamic-security config (called before each broker start)."""
        self._dynsec_file = path
        im = self.ctx.internal_mqtt
        pw, salt, iters = password_hash(im.password)
        clients = [{"username": im.username, "password": pw, "salt": salt, "iterations": iters,
                    "roles": [{"rolename": INTERNAL_ROLE}]}]
        for purpose, role in (("admin", ADMIN_ROLE), ("app", APP_ROLE)):
            username, password = derived_login(im.password, purpose)
            pw, salt, iters = password_hash(password)
            clients.append({"username": username, "password": pw, "salt": salt, "iterations": iters,
                            "roles": [{"rolename": role}]})
        roles = [_internal_role(), _admin_role(), _app_role()]
        self.applied, self.roles = {}, {}
        for cn, (clientid, acls, disabled, cert_id) in self._desired().items():
            rolename = _role_name(cert_id, acls)
            pw, salt, iters = password_hash(certificate_login(im.password, cert_id, cn)[1])
            client = {"username": cn, "roles": [{"rolename": rolename}], "disabled": disabled,
                      "password": pw, "salt": salt, "iterations": iters}
            if clientid:
                client["clientid"] = clientid
            clients.append(client)
            if rolename not in self.roles:
                roles.append({"rolename": rolename, "acls": acls})
                self.roles[rolename] = acls
            self.applied[cn] = (clientid, rolename, disabled)
        doc = {
            "clients": clients, "groups": [], "roles": roles,
            "defaultACLAccess": {"publishClientSend": False, "publishClientReceive": False,
                                 "subscribe": False, "unsubscribe": True},
        }
        from fleetdesk.paths import write_private

        write_private(path, json.dumps(doc, indent=1).encode())
        self._write_crl()

    def _write_crl(self) -> bool:
        serials = set(self.ctx.registry.revoked_serials())
        if serials == self.crl_serials and self.ctx.ca.crl_file.exists():
            return False
        self.ctx.ca.write_crl(sorted(serials))
        self.crl_serials = serials
        return True

    # -- control connection -------------------------------------------------------------
    def _mqtt_client(self, identifier: str | None = None):
        import aiomqtt

        im = self.ctx.internal_mqtt
        username, password = derived_login(im.password, "admin")
        return aiomqtt.Client(im.host, im.port, username=username, password=password,
                              identifier=identifier or f"fleetdesk-authz-{uuid.uuid4().hex[:8]}",
                              protocol=aiomqtt.ProtocolVersion.V311, clean_session=True, timeout=10)

    async def connect(self) -> None:
        """(Re)connect the control client to the broker."""
        await self.close()
        self._client_cm = cm = self._mqtt_client()
        self._client = client = await cm.__aenter__()
        self._responses = asyncio.Queue()
        await client.subscribe(CONTROL_TOPIC + "/response", qos=1)
        self._reader = asyncio.create_task(self._read_responses(client))

    async def _read_responses(self, client) -> None:
        try:
            async for msg in client.messages:
                assert self._responses is not None
                self._responses.put_nowait(msg.payload)
        except Exception as exc:  # noqa: BLE001 - the broker went away; connect() restarts us
            log.debug("control client stopped: %r", exc)

    async def close(self) -> None:
        if self._reader:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
            self._reader = None
        if self._client_cm is not None:
            try:
                await self._client_cm.__aexit__(None, None, None)
            except Exception:  # noqa: BLE001
                pass
            self._client_cm = self._client = None

    async def _commands(self, commands: list[dict]) -> None:
        """Send dynamic-security commands; retry once on a fresh link, else restart the broker
        (which rebuilds its whole dynamic-security state from the registry)."""
        if not commands:
            return
        for attempt in (1, 2):
            try:
                if self._client is None or attempt == 2:
                    await self.connect()
                for start in range(0, len(commands), 40):  # stay far below the 149504-byte packet limit
                    await self._send(commands[start:start + 40])
                return
            except Exception as exc:  # noqa: BLE001 - MqttError, timeout, broker restarting
                log.warning("dynamic-security update failed (attempt %d): %r", attempt, exc)
        print("sandbox: could not update the broker's authorization; restarting mosquitto to rebuild it",
              file=sys.stderr, flush=True)
        broker = self.ctx.broker
        if broker is not None and broker.proc is not None and broker.proc.returncode is None:
            broker.proc.terminate()  # the watchdog restarts it with a fresh dynamic-security file

    async def _send(self, commands: list[dict]) -> None:
        assert self._responses is not None and self._client is not None  # connect() came first
        while not self._responses.empty():
            self._responses.get_nowait()
        await self._client.publish(CONTROL_TOPIC, json.dumps({"commands": commands}), qos=1)
        reply = json.loads(await asyncio.wait_for(self._responses.get(), 10))
        for cmd, res in zip(commands, reply.get("responses", []), strict=False):
            if res.get("error"):
                log.warning("dynsec %s failed: %s", cmd.get("command"), res["error"])

    # -- applying changes ---------------------------------------------------------------
    async def sync(self, cert_ids: list[str] | None = None) -> None:
        """Bring the broker in line with the registry (CRL first, then dynamic security).

        Args:
            cert_ids: only these certificates changed (default: check all of them).
        """
        async with self._lock:
            if self._write_crl() and self.ctx.broker is not None:
                self.ctx.broker.reload()
            desired = self._desired(cert_ids)
            scope = None if cert_ids is None else {self.cn_of.get(c) for c in cert_ids}
            pre, post = [], []
            for cn, (clientid, acls, disabled, cert_id) in desired.items():
                rolename = _role_name(cert_id, acls)
                if rolename not in self.roles:
                    pre.append({"command": "createRole", "rolename": rolename, "acls": acls})
                    self.roles[rolename] = acls
                old = self.applied.get(cn)
                if old is None:
                    cmd = {"command": "createClient", "username": cn, "roles": [{"rolename": rolename}],
                           "password": certificate_login(self.ctx.internal_mqtt.password, cert_id, cn)[1]}
                    if clientid:
                        cmd["clientid"] = clientid
                    pre.append(cmd)
                    if disabled:
                        pre.append({"command": "disableClient", "username": cn})
                else:
                    if old[0] != clientid or old[1] != rolename:
                        pre.append({"command": "modifyClient", "username": cn, "clientid": clientid or "",
                                    "roles": [{"rolename": rolename}]})
                    if old[2] != disabled:
                        pre.append({"command": "disableClient" if disabled else "enableClient", "username": cn})
                self.applied[cn] = (clientid, rolename, disabled)
            for cn in [cn for cn in self.applied if cn not in desired and (scope is None or cn in scope)]:
                pre.append({"command": "disableClient", "username": cn})
                pre.append({"command": "deleteClient", "username": cn})
                del self.applied[cn]
            used = {v[1] for v in self.applied.values()}
            for rolename in [r for r in self.roles if r not in used]:
                post.append({"command": "deleteRole", "rolename": rolename})
                del self.roles[rolename]
            await self._commands(pre + post)
            await self._recheck_sessions(None if cert_ids is None else set(cert_ids))

    async def _recheck_sessions(self, cert_ids: set[str] | None) -> None:
        """Kick live connections that the registry no longer allows."""
        for client_id, event in list(self.sessions.items()):
            if event is None or event.certificate_id is None:
                continue
            if cert_ids is not None and event.certificate_id not in cert_ids:
                continue
            if not self._allowed(event.identity, client_id)[0]:
                self._spawn(self._kick(client_id, "FORBIDDEN_ACCESS"))

    async def on_registry_changed(self, change) -> None:
        if change.kind in ("certificate", "policy", "principal", "thing", "thing_group"):
            cert_ids = self.affected_certificates(change)
            if os.environ.get("FLEETDESK_SANDBOX_FULL_SYNC"):  # diagnostics / bench baseline
                cert_ids = None
            if cert_ids != []:
                await self.sync(cert_ids)

    async def before_broker_start(self, path: Path) -> None:
        """Before each (re)start: everyone still listed went offline with the old broker;
        then write the dynamic-security file from the registry."""
        sessions, self.sessions = self.sessions, {}
        for event in sessions.values():
            if event is not None:
                await self._emit(event, "disconnected", "SERVER_ERROR")
        self.write_dynsec_file(path)

    async def on_broker_restart(self) -> None:
        """After mosquitto restarted: reconnect the control client."""
        await self.connect()

    # -- connections --------------------------------------------------------------------
    def _allowed(self, identity: str, client_id: str) -> tuple[bool, str | None, str | None]:
        """(may connect, thing name, certificate id) for a certificate identity."""
        cert_id = self.ctx.registry.certificate_by_cn(identity)
        if cert_id is None:
            return False, None, None
        return self.allowed_certificate(cert_id, client_id)

    def allowed_certificate(self, cert_id: str, client_id: str) -> tuple[bool, str | None, str | None]:
        """(may connect, thing name, certificate id): the certificate is ACTIVE and its policies
        allow iot:Connect for ``client_id`` (policy variables resolved for its thing)."""
        try:
            view = self.ctx.registry.certificate_view(cert_id)
        except AwsError:
            return False, None, None
        if view.status != "ACTIVE":
            return False, None, cert_id
        if not view.things:  # claim certs: iot:Connect from policies without thing variables
            return may_connect(view.policy_documents, None, client_id), None, cert_id
        thing = client_id if client_id in view.things else (view.things[0] if len(view.things) == 1 else None)
        return may_connect(view.policy_documents, thing, client_id, self._thing_info(thing)), thing, cert_id

    async def on_connection(self, rec: RawConnection) -> None:
        """Called with each connection line of the broker log."""
        if rec.kind == "connected":
            if rec.identity in (self.ctx.internal_mqtt.username, "fleetdesk-admin", "fleetdesk-app"):
                self.sessions[rec.client_id] = None
                return
            front = self.ctx.extras.get("mtls_front")
            link = front.links.get(rec.address) if front is not None else None
            if link is not None:  # bridged by the mTLS front: the device's own address and certificate
                rec = RawConnection(rec.kind, rec.client_id, rec.identity, link[0], rec.reason, rec.ts_ms)
            if link is not None or rec.identity.startswith(DEVICE_CN_PREFIX):
                if link is not None:
                    ok, thing, cert_id = self.allowed_certificate(link[1], rec.client_id)
                else:
                    ok, thing, cert_id = self._allowed(rec.identity, rec.client_id)
                if not ok:
                    self.sessions[rec.client_id] = None
                    print(f"sandbox: refused {rec.client_id!r} (certificate {cert_id or rec.identity}): "
                          "iot:Connect not allowed", file=sys.stderr, flush=True)
                    self._spawn(self._kick(rec.client_id, None))
                    return
            else:
                thing, cert_id = None, None
            event = ClientEvent("connected", rec.client_id, rec.identity, rec.address, "", rec.ts_ms, thing, cert_id)
            self.sessions[rec.client_id] = event
            await self.ctx.events.emit(event)
        else:
            gone = self.sessions.pop(rec.client_id, None)
            if gone is not None:
                await self._emit(gone, "disconnected", rec.reason)

    def _spawn(self, coro) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _emit(self, event: ClientEvent, kind: str, reason: str) -> None:
        import time

        await self.ctx.events.emit(ClientEvent(kind, event.client_id, event.identity, "", reason,
                                               int(time.time() * 1000), event.thing_name, event.certificate_id))

    async def _kick(self, client_id: str, reason: str | None) -> None:
        """Drop the connection using ``client_id`` by taking the id over with an internal client."""
        if client_id in self._kicking:
            return
        self._kicking.add(client_id)
        try:
            event = self.sessions.get(client_id)
            if event is not None and reason:
                self.sessions[client_id] = None
                await self._emit(event, "disconnected", reason)
            await self._take_over(client_id)
        except Exception as exc:  # noqa: BLE001
            log.warning("could not kick %s: %r", client_id, exc)
        finally:
            self._kicking.discard(client_id)

    async def _take_over(self, client_id: str) -> None:
        """Connect with ``client_id`` (MQTT 3.1.1, clean session) and leave: the broker drops the
        older connection that used the id. A raw CONNECT/DISCONNECT exchange keeps this
        independent of client-library threading."""
        im = self.ctx.internal_mqtt

        def field(text: str) -> bytes:
            raw = text.encode()
            return struct.pack("!H", len(raw)) + raw

        body = field("MQTT") + bytes([4, 0xC2]) + struct.pack("!H", 10) + field(client_id) + field(im.username) \
            + field(im.password)
        length, remaining = b"", len(body)
        while True:
            byte, remaining = remaining % 128, remaining // 128
            length += bytes([byte | (0x80 if remaining else 0)])
            if not remaining:
                break
        reader, writer = await asyncio.wait_for(asyncio.open_connection(im.host, im.port), 5)
        try:
            writer.write(b"\x10" + length + body)
            await writer.drain()
            connack = await asyncio.wait_for(reader.readexactly(4), 5)
            if connack[0] != 0x20 or connack[3] != 0:
                raise ConnectionError(f"internal login refused (CONNACK {connack.hex()})")
            writer.write(b"\xe0\x00")
            await writer.drain()
        finally:
            writer.close()
