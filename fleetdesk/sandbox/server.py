"""The sandbox process: state dir, CA, registry, mosquitto, authorizer, control plane, services.

Extension contracts (for the sandbox services and anyone adding control-plane APIs):

* ``ROUTE_MODULES``: each module (missing ones are skipped) exposes ``ROUTES``, a list of
  ``(service, HTTP method, path regex, handler)``; ``service`` is "iot" or "iot-data" (told
  apart by the SigV4 credential scope of the Authorization header; boto3's iot-data signs
  as "iotdata"); ``handler(ctx, request)`` (plain or ``async``) returns
  ``(status, json_body)`` (``json_body`` may be ``bytes`` for a raw payload) and raises
  ``fleetdesk.sandbox.awserror.AwsError(code, message, status)`` for errors, rendered in
  AWS's rest-json shape so botocore raises ClientError with that code. The simplest way to
  write one is ``control_plane.model_route("iot", "CreateJob", handler)``: the route comes
  from botocore's model and ``request.params`` holds the input members; a plain dict
  returned by such a handler is sent with the operation's status code.
* ``SERVICE_MODULES``: each module exposes ``async def start(ctx)`` returning an object with
  ``async def stop()``. ``ctx`` is a :class:`~fleetdesk.sandbox.context.SandboxContext`
  (registry, CA, internal MQTT login, client events, registry changes, ports). Services
  start after the broker and control plane and before the ready line, in this order, and
  stop in reverse. A service that sets ``ctx.ws_public_port`` changes the ``ws_port`` the
  ready line reports.

State dir layout: VERSION, credentials.json (0600), registry.sqlite, ca/ (CA, server cert,
CRL), broker/ (mosquitto.conf, dynamic-security.json, mosquitto.db: persistent MQTT sessions and
their queued messages), endpoint.json (while running).
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import secrets
import signal
import socket
import ssl
import string
import sys
from pathlib import Path
from typing import Callable, TextIO

from fleetdesk.errors import SandboxError
from fleetdesk.paths import write_private
from fleetdesk.process import pid_alive
from fleetdesk.sandbox.info import CREDENTIALS_FILE, ENDPOINT_FILE, SandboxInfo

ROUTE_MODULES = (
    "fleetdesk.sandbox.api_registry",
    "fleetdesk.sandbox.api_jobs",
    "fleetdesk.sandbox.api_data",
    "fleetdesk.sandbox.api_provisioning",
    "fleetdesk.sandbox.api_index",
    "fleetdesk.sandbox.api_dynamodb",
    "fleetdesk.sandbox.api_rules",
    "fleetdesk.sandbox.api_ca",
)
SERVICE_MODULES = (
    "fleetdesk.sandbox.quotas",
    "fleetdesk.sandbox.shadow_service",
    "fleetdesk.sandbox.jobs_service",
    "fleetdesk.sandbox.presence",
    "fleetdesk.sandbox.index_service",
    "fleetdesk.sandbox.api_dynamodb",
    "fleetdesk.sandbox.rules_engine",
    "fleetdesk.sandbox.provisioning",
    "fleetdesk.sandbox.wss",
)
VERSION_FILE = "VERSION"
STATE_VERSION = "fleetdesk-sandbox 1"
DEFAULT_PORT_BASE = 18883
DEFAULT_REGION = "us-east-1"
PORTS_USED = 4  # mqtt, ws, https, internal


def _load_modules(names) -> list:
    """The modules named (each must import: a missing route or service is an error, never skipped)."""
    return [importlib.import_module(name) for name in names]


def prepare_state_dir(state_dir: Path) -> None:
    """Create or check the state dir. Never wipes: a foreign or newer dir is an error."""
    marker = state_dir / VERSION_FILE
    if state_dir.exists() and not state_dir.is_dir():
        raise SandboxError(f"{state_dir} is not a directory", "pass a directory with --state-dir")
    if state_dir.is_dir() and any(state_dir.iterdir()):
        try:
            text = marker.read_text().strip()
        except OSError:
            raise SandboxError(
                f"{state_dir} is not empty and is not a Fleetdesk sandbox state dir (no {VERSION_FILE} file)",
                "pass an empty or new directory with --state-dir; Fleetdesk never wipes a directory",
            ) from None
        if text != STATE_VERSION:
            raise SandboxError(
                f"{state_dir} holds sandbox state of an unknown version ({text!r}, expected {STATE_VERSION!r})",
                "use the Fleetdesk version that made it, or pass a new --state-dir",
            )
        return
    state_dir.mkdir(parents=True, exist_ok=True)
    marker.write_text(STATE_VERSION + "\n")


def _random(n: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(n))


def load_credentials(state_dir: Path) -> dict:
    """The sandbox's fixed credentials, made once per state dir (0600)."""
    path = state_dir / CREDENTIALS_FILE
    if path.exists():
        try:
            creds = json.loads(path.read_text())
            if all(k in creds for k in ("aws_access_key_id", "aws_secret_access_key", "internal_password", "account_id")):
                return creds
        except (OSError, ValueError) as exc:
            raise SandboxError(f"{path} is unreadable ({exc})", "restore it, or use a new --state-dir") from exc
        raise SandboxError(f"{path} is incomplete", "restore it, or use a new --state-dir")
    creds = {
        "aws_access_key_id": "AKIA" + _random(16, string.ascii_uppercase + string.digits),
        "aws_secret_access_key": _random(40),
        "internal_username": "fleetdesk-internal",
        "internal_password": _random(32),
        "account_id": "".join(secrets.choice(string.digits) for _ in range(12)),
    }
    write_private(path, json.dumps(creds, indent=2).encode())
    return creds


def is_loopback(host: str) -> bool:
    """True for localhost / 127.x / ::1."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def choose_ports(port_base: int, bind: str = "127.0.0.1") -> list[int]:
    """Ports for mqtt, ws, https, internal: port_base.. or free ones if port_base is 0.

    Raises:
        SandboxError: a port is taken (naming it and ``--port-base``).
    """
    if port_base == 0:
        socks = []
        try:
            for _ in range(PORTS_USED):
                s = socket.socket()
                s.bind(("127.0.0.1", 0))
                socks.append(s)
            return [s.getsockname()[1] for s in socks]
        finally:
            for s in socks:
                s.close()
    if not 1 <= port_base <= 65535 - PORTS_USED:
        raise SandboxError(f"--port-base {port_base} is out of range", f"use 1024..{65535 - PORTS_USED} (or 0 for free ports)")
    ports = list(range(port_base, port_base + PORTS_USED))
    for i, port in enumerate(ports):
        s = socket.socket()
        try:
            if sys.platform != "win32":
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((bind if i == 0 else "127.0.0.1", port))
        except OSError:
            raise SandboxError(  # one line, as the issue asks
                f"port {port} is already in use: stop what uses it or choose other ports with --port-base N "
                f"(the sandbox uses N..N+{PORTS_USED - 1})"
            ) from None
        finally:
            s.close()
    return ports


class _StateLock:
    """One sandbox per state dir (an advisory lock on ``<state_dir>/sandbox.lock``)."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "sandbox.lock"
        self.fh: TextIO | None = None

    def acquire(self) -> None:
        self.fh = open(self.path, "a+")
        try:
            if sys.platform == "win32":
                import msvcrt

                msvcrt.locking(self.fh.fileno(), msvcrt.LK_NBLCK, 1)
            else:
                import fcntl

                fcntl.flock(self.fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.fh.close()
            self.fh = None
            info = SandboxInfo.load(self.path.parent)
            where = f" (pid {info.pid}, control plane {info.http_endpoint})" if info else ""
            raise SandboxError(
                f"a sandbox is already running for {self.path.parent}{where}",
                "use it (`fleetdesk sandbox env`), stop it, or pass another --state-dir",
            ) from None

    def release(self) -> None:
        if self.fh:
            self.fh.close()
            self.fh = None


def _server_ssl(ca) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(ca.server_cert_file), str(ca.server_key_file))
    return ctx


async def run_sandbox(state_dir: Path, port_base: int = DEFAULT_PORT_BASE, region: str = DEFAULT_REGION, *,
                      host: str = "127.0.0.1", on_ready: Callable[[SandboxInfo], None] | None = None,
                      stop: asyncio.Event | None = None) -> None:
    """Run the sandbox until ``stop`` is set or SIGINT/SIGTERM arrives.

    Args:
        state_dir: where state lives (made and marked if new; a foreign dir is refused).
        port_base: first of the 4 ports (0 = free ports).
        region: region in ARNs and the ready line.
        host: the address devices use for MQTT (a LAN IP or host name for real boards: the
            mTLS listener then binds all interfaces and the server certificate names it).
        on_ready: called once with the :class:`SandboxInfo` when everything answers.
        stop: an event that ends the run (a fresh one, set by signals, if None).
    """
    from fleetdesk.sandbox.authz import Authorizer
    from fleetdesk.sandbox.broker import Broker, BrokerConfig, find_mosquitto
    from fleetdesk.sandbox.ca import SandboxCA
    from fleetdesk.sandbox.context import InternalMqtt, SandboxContext
    from fleetdesk.sandbox.control_plane import ControlPlane
    from fleetdesk.sandbox.registry import Registry

    find_mosquitto()  # before touching the state dir: say how to install it
    state_dir = Path(state_dir).resolve()
    prepare_state_dir(state_dir)
    lock = _StateLock(state_dir)
    lock.acquire()
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass
    started: list = []
    registry = broker = authorizer = plane = None
    from fleetdesk.sandbox import loop_watch

    watch = loop_watch.from_env()
    try:
        from fleetdesk.sandbox.state_check import check_state

        check_state(state_dir)  # a missing/empty/unreadable part is refused, never re-made
        bind = "127.0.0.1" if is_loopback(host) else "0.0.0.0"
        mqtt_port, ws_port, https_port, internal_port = choose_ports(port_base, bind)
        creds = load_credentials(state_dir)
        ca = SandboxCA.load_or_create(state_dir / "ca")
        if not is_loopback(host):
            ca.ensure_server_names([host])
        registry = Registry(state_dir / "registry.sqlite", region, creds["account_id"])
        ctx = SandboxContext(
            state_dir=state_dir, region=region, account_id=creds["account_id"], registry=registry, ca=ca,
            mqtt_host=host, mqtt_port=mqtt_port, ws_port=ws_port,
            internal_mqtt=InternalMqtt("127.0.0.1", internal_port, creds.get("internal_username", "fleetdesk-internal"),
                                       creds["internal_password"]),
            https_port=https_port, port_base=port_base,
            credentials={k: creds[k] for k in ("aws_access_key_id", "aws_secret_access_key")},
            ws_public_port=ws_port, server_ssl=_server_ssl(ca),
        )
        authorizer = Authorizer(ctx)
        ctx.authorizer = authorizer
        broker_dir = state_dir / "broker"
        from fleetdesk.sandbox import mtls_front

        config = BrokerConfig(broker_dir, mqtt_port, ws_port, internal_port, ca.ca_file, ca.server_cert_file,
                              ca.server_key_file, ca.crl_file, broker_dir / "dynamic-security.json", bind=bind,
                              device_listener=not mtls_front.enabled())

        async def before_start() -> None:
            await authorizer.before_broker_start(config.dynsec_file)

        broker = Broker(config, on_connection=authorizer.on_connection, before_start=before_start,
                        on_restart=authorizer.on_broker_restart)
        ctx.broker = broker
        await broker.start()
        await authorizer.connect()
        ctx.registry_changed.listen(authorizer.on_registry_changed)
        if not config.device_listener:
            started.append(await mtls_front.start(ctx, bind, mqtt_port))

        routes = [r for m in _load_modules(ROUTE_MODULES) for r in getattr(m, "ROUTES", [])]
        plane = ControlPlane(ctx, routes, ctx.server_ssl, "127.0.0.1", https_port)
        try:
            await plane.start()
        except OSError as exc:
            raise SandboxError(f"port {https_port} is already in use ({exc.strerror}): "
                               "choose other ports with --port-base N") from exc
        for module in _load_modules(SERVICE_MODULES):
            started.append(await module.start(ctx))

        info = SandboxInfo(mqtt_host=ctx.mqtt_host, mqtt_port=mqtt_port, ws_port=ctx.ws_public_port or ws_port,
                           http_endpoint=ctx.http_endpoint, ca_file=str(ca.ca_file), region=region,
                           state_dir=str(state_dir), pid=os.getpid(),
                           aws_access_key_id=creds["aws_access_key_id"],
                           aws_secret_access_key=creds["aws_secret_access_key"])
        (state_dir / ENDPOINT_FILE).write_text(json.dumps({**info.ready_json(), "pid": info.pid,
                                                           "state_dir": info.state_dir,
                                                           "internal_port": internal_port}, indent=2))
        if on_ready:
            on_ready(info)
        await stop.wait()
    finally:
        for service in reversed(started):
            try:
                await service.stop()
            except Exception as exc:  # noqa: BLE001 - keep shutting down
                print(f"sandbox: a service failed to stop: {exc!r}", file=sys.stderr)
        if plane:
            await plane.stop()
        if authorizer:
            await authorizer.close()
        if broker:
            await broker.stop()
        if registry:
            registry.close()
        endpoint = state_dir / ENDPOINT_FILE
        try:
            if endpoint.exists() and json.loads(endpoint.read_text()).get("pid") == os.getpid():
                endpoint.unlink()
        except (OSError, ValueError):
            pass
        lock.release()
        if watch is not None:
            watch.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.remove_signal_handler(sig)
            except (NotImplementedError, RuntimeError):
                pass


def is_running(state_dir: Path) -> SandboxInfo | None:
    """The running sandbox for ``state_dir`` or None (see :meth:`SandboxInfo.load`)."""
    info = SandboxInfo.load(state_dir)
    return info if info and pid_alive(info.pid) else None
