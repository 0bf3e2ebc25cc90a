"""From a profile to a working cloud session: MQTT settings, boto3 clients, and
:class:`CloudSession`, the one object the GUI and the CLI hold.

Sandbox profile: the running sandbox's ``endpoint.json`` gives the endpoint, CA and the
app's privileged login (its internal MQTT login on loopback if published, else WebSockets
+ SigV4 with the sandbox credentials, exactly as on AWS). AWS profile: WebSockets + SigV4
to the iot:Data-ATS endpoint with the profile's credentials (default chain, named profile,
or keyring), and boto3 with the same credentials.

Example::

    session = CloudSession(Profiles.load().current)
    await session.start()                 # connect, subscribe, load things + presence
    for name in session.fleet.take_changes(): ...
    await session.shadows.update("t1", desired={"on": True}, version=7)
    await session.stop()
"""

from __future__ import annotations

import asyncio
import getpass
import hashlib
import json
import logging
import socket
import uuid
from pathlib import Path
from typing import Any

from fleetdesk.cloud.connection import Connection
from fleetdesk.cloud.control import ControlPlane
from fleetdesk.cloud.logs import Logs
from fleetdesk.cloud.presence import Presence
from fleetdesk.cloud.rpc import Rpc
from fleetdesk.cloud.settings import ConnectionSettings
from fleetdesk.cloud.shadows import Shadows
from fleetdesk.cloud.telemetry import Telemetry
from fleetdesk.config import Profile
from fleetdesk.errors import CloudError
from fleetdesk.fleet.state import FleetState
from fleetdesk.paths import sandbox_state_dir
from fleetdesk.store.telemetry import DEFAULT_RETENTION_DAYS, TelemetryStore

log = logging.getLogger(__name__)


def app_client_id(profile: Profile, ephemeral: bool = False) -> str:
    """The app's MQTT client id: stable per user+host+profile (persistent session), or a
    one-off id for short CLI commands (so they never take the GUI's session over)."""
    if ephemeral:
        return f"fleetdesk-cli-{uuid.uuid4().hex[:12]}"
    who = f"{getpass.getuser()}@{socket.gethostname()}/{profile.name}"
    return "fleetdesk-app-" + hashlib.sha256(who.encode()).hexdigest()[:12]


def sandbox_endpoint(profile: Profile) -> dict:
    """The running sandbox's endpoint.json (plus its state dir).

    Raises:
        CloudError: the sandbox is not running.
    """
    state_dir = Path(profile.state_dir) if profile.state_dir else sandbox_state_dir()
    path = state_dir / "endpoint.json"
    try:
        data = json.loads(path.read_text())
        data["mqtt_host"], int(data["mqtt_port"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CloudError(
            f"the sandbox is not running (no usable {path})",
            "start it with `fleetdesk sandbox up` (or from Settings in the app)",
        ) from exc
    data.setdefault("state_dir", str(state_dir))
    try:  # secrets (SigV4 keys, internal login) live next to it, not in endpoint.json
        creds = json.loads((state_dir / "credentials.json").read_text())
        if isinstance(creds, dict):
            for k, v in creds.items():
                data.setdefault(k, v)
    except (OSError, ValueError):
        pass
    return data


def _sandbox_credentials(ep: dict) -> tuple[str, str]:
    creds = ep.get("credentials") or {}
    key = creds.get("aws_access_key_id") or ep.get("aws_access_key_id")
    secret = creds.get("aws_secret_access_key") or ep.get("aws_secret_access_key")
    if not (key and secret):
        try:  # the sandbox-core API, when present
            from fleetdesk.sandbox.info import SandboxInfo

            info = SandboxInfo.load(ep["state_dir"])
            kw = info.boto3_kwargs() if info is not None else {}
            key, secret = kw.get("aws_access_key_id"), kw.get("aws_secret_access_key")
        except Exception as exc:  # noqa: BLE001
            log.debug("SandboxInfo unavailable: %s", exc)
    return key or "fleetdesk", secret or "fleetdesk-sandbox"


def boto3_kwargs(profile: Profile) -> dict:
    """Arguments for ``boto3.client("iot" | "iot-data", **kwargs)`` for this profile."""
    if profile.kind == "sandbox":
        ep = sandbox_endpoint(profile)
        try:
            from fleetdesk.sandbox.info import SandboxInfo

            info = SandboxInfo.load(ep["state_dir"])
            if info is not None:
                return info.boto3_kwargs()
        except ImportError:
            pass
        key, secret = _sandbox_credentials(ep)
        return {"endpoint_url": ep["http_endpoint"], "region_name": ep.get("region", "us-east-1"),
                "aws_access_key_id": key, "aws_secret_access_key": secret, "verify": ep["ca_file"]}
    profile.validate()
    kw: dict = {"region_name": profile.region}
    if profile.credentials == "keyring":
        secret = profile.secret_key()
        if not secret:
            raise CloudError(f"no secret key for {profile.access_key_id} in the OS keyring",
                             "enter it again in Settings")
        kw.update(aws_access_key_id=profile.access_key_id, aws_secret_access_key=secret)
    return kw


def control_plane(profile: Profile) -> ControlPlane:
    """boto3 ``iot``/``iot-data`` clients for the profile, wrapped in :class:`ControlPlane`."""
    import boto3

    kw = boto3_kwargs(profile)
    if profile.kind == "aws" and profile.credentials == "aws-profile":
        s = boto3.Session(profile_name=profile.aws_profile)
        return ControlPlane(s.client("iot", **kw), s.client("iot-data", **kw))
    return ControlPlane.from_kwargs(**kw)


def app_settings(profile: Profile, *, ephemeral: bool = False, **overrides: Any) -> ConnectionSettings:
    """How the app connects to MQTT for this profile (privileged, sees ``$aws/...``)."""
    client_id = app_client_id(profile, ephemeral)
    common: dict = {"client_id": client_id, "clean_start": ephemeral}
    if profile.kind == "sandbox":
        ep = sandbox_endpoint(profile)
        app = ep.get("app_mqtt") or ep.get("internal_mqtt")
        if not app and ep.get("internal_username") and ep.get("internal_port"):
            app = {"host": "127.0.0.1", "port": ep["internal_port"], "username": ep["internal_username"],
                   "password": ep.get("internal_password", "")}
        if isinstance(app, dict) and app.get("cert_file"):
            s = ConnectionSettings(host=app.get("host", ep["mqtt_host"]), port=int(app.get("port", ep["mqtt_port"])),
                                   ca_file=ep["ca_file"], cert_file=app["cert_file"], key_file=app["key_file"],
                                   **common)
        elif isinstance(app, dict) and app.get("username"):
            s = ConnectionSettings(host=app.get("host", "127.0.0.1"), port=int(app["port"]),
                                   username=app["username"], password=app.get("password", ""),
                                   ca_file=ep["ca_file"] if app.get("tls") else None, tls=bool(app.get("tls")),
                                   **common)
        else:
            from awscrt import auth

            key, secret = _sandbox_credentials(ep)
            s = ConnectionSettings(host=ep["mqtt_host"], port=int(ep["ws_port"]), ca_file=ep["ca_file"],
                                   websockets=True, region=ep.get("region", "us-east-1"),
                                   credentials_provider=auth.AwsCredentialsProvider.new_static(key, secret),
                                   **common)
    else:
        from awscrt import auth

        profile.validate()
        if profile.credentials == "aws-profile":
            provider = auth.AwsCredentialsProvider.new_profile(profile_name=profile.aws_profile)
        elif profile.credentials == "keyring":
            provider = auth.AwsCredentialsProvider.new_static(profile.access_key_id, profile.secret_key() or "")
        else:
            provider = auth.AwsCredentialsProvider.new_default_chain()
        s = ConnectionSettings(host=profile.endpoint, port=443, websockets=True, region=profile.region,
                               credentials_provider=provider, **common)
    for k, v in overrides.items():
        setattr(s, k, v)
    return s


class CloudSession:
    """Everything cloud for one profile: connection, fleet model, history and services.

    Attributes:
        conn: the MQTT :class:`Connection` (``conn.add_state_listener`` for the status bar).
        control: boto3 :class:`ControlPlane` (things, groups, jobs, connectivity).
        fleet: the :class:`FleetState` (poll ``take_changes()`` on a timer).
        store: the :class:`TelemetryStore` (history, export), or None.
        telemetry, shadows, presence, rpc, logs: the services.

    Args:
        profile: the active profile.
        settings: MQTT settings (default: :func:`app_settings`).
        control: control plane (default: :func:`control_plane`).
        store: telemetry history; ``None`` = open the default one (retention from
            ``profile.extra["retention_days"]``, default 30 days); ``False`` = none.
    """

    def __init__(self, profile: Profile, *, settings: ConnectionSettings | None = None,
                 control: ControlPlane | None = None, store: TelemetryStore | None | bool = None,
                 fleet: FleetState | None = None) -> None:
        self.profile = profile
        self.conn = Connection(settings or app_settings(profile))
        self.control = control or control_plane(profile)
        self.fleet = fleet or FleetState()
        retention = (profile.extra or {}).get("retention_days", DEFAULT_RETENTION_DAYS)
        self.store = TelemetryStore(retention_days=retention) if store is None else (store or None)
        self.telemetry = Telemetry(self.conn, self.store, self.fleet)
        self.shadows = Shadows(self.conn, self.fleet)
        self.presence = Presence(self.conn, self.fleet, self.control)
        self.rpc = Rpc(self.conn)
        self.logs = Logs(self.conn)

    async def start(self, *, connect_timeout: float = 15.0, load_registry: bool = True) -> None:
        """Connect, subscribe every stream, then load things, groups and presence.

        Raises:
            ConnectFailed: the broker cannot be reached or refused the login.
            ControlPlaneError: ListThings failed.
        """
        # Telemetry is subscribed before connecting: a persistent session's backlog arrives right
        # after CONNACK and must find its handler (store before ack), not be acked unstored.
        await self.telemetry.start()
        await self.conn.start()
        await self.conn.wait_connected(connect_timeout)
        await self.shadows.start()
        await self.rpc.start()
        await self.logs.start()
        names: list[str] = []
        if load_registry:
            things = await self.control.list_things()
            self.fleet.apply_registry(things)
            names = [t["thingName"] for t in things if t.get("thingName")]
        if self.store is not None:
            for name, s in self.store.latest().items():
                if name in self.fleet.things and self.fleet.things[name].sample_ts is None:
                    t = self.fleet.things[name]
                    t.temperature, t.humidity, t.sample_ts, t.seq = s.temperature, s.humidity, s.ts, s.seq
        await self.presence.start(names)

    async def load_shadows(self, concurrency: int = 16) -> None:
        """Read every known thing's classic shadow once (firmware and shadow-version columns);
        later changes arrive through ``/update/documents``. Missing shadows are skipped."""
        from fleetdesk.cloud.errors import CloudError as _CloudError

        sem = asyncio.Semaphore(concurrency)

        async def one(name: str) -> None:
            async with sem:
                try:
                    await self.shadows.get(name)
                except _CloudError:
                    pass

        await asyncio.gather(*(one(n) for n in list(self.fleet.things)))

    async def refresh_groups(self) -> None:
        """Load every thing's groups into the fleet model (one call per group)."""
        groups = await self.control.list_groups()
        member: dict[str, list[str]] = {}
        for g in groups:
            for t in await self.control.things_in_group(g["groupName"]):
                member.setdefault(t, []).append(g["groupName"])
        for name in self.fleet.things:
            self.fleet.set_groups(name, member.get(name, []))

    async def stop(self) -> None:
        """Store what is pending, disconnect, close the history."""
        try:
            await self.presence.stop()
            await self.rpc.stop()
            await self.logs.stop()
            await self.shadows.stop()
            # Keep the telemetry subscription in the persistent session: the broker queues what
            # devices send while the app is closed, and the next start stores it.
            await self.telemetry.stop(unsubscribe=False)
        except Exception as exc:  # noqa: BLE001 - still disconnect
            log.warning("stopping services: %s", exc)
        await self.conn.stop()
        if self.store is not None:
            self.store.close()
