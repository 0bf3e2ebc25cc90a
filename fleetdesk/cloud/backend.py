"""The cloud a profile points at, as one object: the local sandbox or an AWS IoT account.

:func:`get_cloud_backend` is the only place that looks at ``profile.kind`` (the model is
bleak's ``get_platform_client_backend_type``: callers ask for "the backend" and never test
which one they got). A :class:`CloudBackend` owns everything that differs between the two:

* the control-plane and data clients (boto3 ``iot``, ``iot-data``, ``s3``, built one way:
  :meth:`CloudBackend.client`), wrapped as :meth:`control_plane` for async callers;
* the app's MQTT connection settings (:meth:`mqtt_settings`);
* the device endpoint boards are given by the flash station and by BLE setup
  (:meth:`device_endpoint`: host, port, region, CA);
* firmware upload for OTA (:meth:`upload_firmware`: the sandbox file store, or S3);
* "is this board online" (:meth:`CloudTarget.is_online` / :meth:`CloudTarget.wait_online`);
* the local service the app starts for it (:meth:`service`: the sandbox child, or nothing);
* one line for the status bar (:meth:`describe`);
* what the Settings form checks and stores for it (:meth:`check_fields`, :attr:`keyring_secret`).

This module is also the only one in ``fleetdesk.cloud``/``boards``/``ble`` that imports
``fleetdesk.sandbox`` (an import-linter contract in pyproject.toml keeps it so).

Example::

    backend = get_cloud_backend(Profiles.load().current)
    target = backend.target()                    # iot client + device endpoint, for flashing
    settings = backend.mqtt_settings(ephemeral=True)
    url = backend.upload_firmware(data, "firmware/1.2.0/fw.bin")
"""

from __future__ import annotations

import dataclasses
import getpass
import hashlib
import re
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

from fleetdesk.config import Profile
from fleetdesk.errors import CloudError, ConfigError
from fleetdesk.paths import RESOURCES_DIR, sandbox_state_dir
from fleetdesk.sandbox.launcher import LauncherState, SandboxLauncher

AMAZON_ROOT_CA = RESOURCES_DIR / "ca" / "AmazonRootCA1.pem"
AWS_MQTT_PORT = 8883
# GetThingConnectivityData error codes meaning "presence is not available to us here"
# (no permission, or fleet indexing with thing connectivity is off): the station then falls
# back to the board's own console report.
PRESENCE_UNAVAILABLE = ("AccessDeniedException", "UnauthorizedException", "InvalidRequestException",
                        "IndexNotReadyException", "ForbiddenException")
# The sandbox accepts any provisioning role; on AWS the template must exist with a real role.
SANDBOX_PROVISIONING_ROLE = "arn:aws:iam::000000000000:role/fleetdesk-provisioning"
AWS_REGION_RE = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d$")
HOST_RE = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)+$")


def _botocore_config():
    from botocore.config import Config

    return Config(connect_timeout=5, read_timeout=20, retries={"max_attempts": 2, "mode": "standard"})


class PresenceUnavailable(CloudError):
    """GetThingConnectivityData cannot be used with this profile (access or indexing)."""


class NotOnline(CloudError):
    """A board did not come online in time (``last``: the last connectivity answer)."""

    def __init__(self, message: str, advice: str | None = None, last: dict | None = None) -> None:
        super().__init__(message, advice)
        self.last = last or {}


class WaitCancelled(CloudError):
    """The wait for a board was cancelled."""


@dataclass(frozen=True)
class DeviceEndpoint:
    """Where a board connects and what it trusts (what flashing and BLE write into it).

    Attributes:
        host: the MQTT host boards connect to.
        port: MQTT over mTLS.
        region: AWS region (the firmware signs nothing with it; it goes in /config.json).
        ca_pem: the CA bundle the device trusts (PEM).
    """

    host: str
    port: int
    region: str | None
    ca_pem: bytes


@dataclass
class CloudTarget:
    """What flashing needs from the cloud: a control-plane ``iot`` client plus the device endpoint.

    Built by :meth:`CloudBackend.target`; tests build one around another ``iot`` client (a
    dead or recording one) with the same endpoint.

    Attributes:
        iot: boto3 ``iot`` client (None for an offline pool: no control plane).
        endpoint: MQTT host boards connect to.
        port: MQTT/TLS port.
        region: AWS region.
        ca_pem: CA bundle the device trusts (PEM).
        name: profile label for records.
        backend: the backend it came from (None when built by hand).
    """

    iot: Any
    endpoint: str
    port: int
    region: str | None
    ca_pem: bytes
    name: str = "sandbox"
    backend: "CloudBackend | None" = field(default=None, repr=False)

    @classmethod
    def from_profile(cls, profile: Profile, state_dir: str | Path | None = None) -> "CloudTarget":
        """The target of a profile (``state_dir`` overrides a sandbox profile's)."""
        return get_cloud_backend(profile, state_dir=state_dir).target()

    @classmethod
    def from_sandbox(cls, state_dir: str | Path | None = None) -> "CloudTarget":
        """The running local sandbox at ``state_dir`` (default: the per-user one)."""
        return get_cloud_backend(Profile(), state_dir=state_dir).target()

    @property
    def device(self) -> DeviceEndpoint:
        return DeviceEndpoint(self.endpoint, self.port, self.region, self.ca_pem)

    @property
    def provisioning_role_arn(self) -> str | None:
        """The role a provisioning template made by the station names (None: the template
        must already exist in the account)."""
        return self.backend.provisioning_role_arn if self.backend is not None else None

    def connectivity(self, thing: str) -> dict:
        """GetThingConnectivityData (see :func:`connectivity`)."""
        return connectivity(self.iot, thing)

    def is_online(self, thing: str, since: float | None = None) -> tuple[bool, dict]:
        """See :func:`is_online`."""
        return is_online(self.iot, thing, since)

    def wait_online(self, thing: str, timeout: float = 60.0, **kwargs: Any) -> dict:
        """See :func:`wait_online`."""
        return wait_online(self.iot, thing, timeout, **kwargs)

    def deactivate(self, certificate_id: str) -> None:
        """Set a certificate INACTIVE (rollback of an identity a board never used)."""
        self.iot.update_certificate(certificateId=certificate_id, newStatus="INACTIVE")


def connectivity(iot: Any, thing: str) -> dict:
    """GetThingConnectivityData: {"connected": bool, "timestamp": epoch ms, "disconnect_reason"}.

    Raises:
        PresenceUnavailable: the call is refused for access or indexing reasons (on AWS it
            needs fleet indexing with thing connectivity on).
    """
    from botocore.exceptions import ClientError

    try:
        resp = iot.get_thing_connectivity_data(thingName=thing)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in PRESENCE_UNAVAILABLE or status in (401, 403):
            raise PresenceUnavailable(f"GetThingConnectivityData is not available ({code}: "
                                      f"{exc.response.get('Error', {}).get('Message', '')})",
                                      "turn on fleet indexing with thing connectivity, or grant "
                                      "iot:GetThingConnectivityData") from exc
        raise
    ts = resp.get("timestamp")
    if hasattr(ts, "timestamp"):
        ts = int(ts.timestamp() * 1000)
    return {"connected": bool(resp.get("connected")), "timestamp": ts,
            "disconnect_reason": resp.get("disconnectReason")}


def is_online(iot: Any, thing: str, since: float | None = None) -> tuple[bool, dict]:
    """The one definition of "this board is online": connected in the cloud's presence, by a
    connection made at or after ``since`` (epoch s, with 2 s of clock slack) when given.

    Returns:
        ``(online, the connectivity answer)``.

    Raises:
        PresenceUnavailable: presence cannot be read with this profile.
    """
    c = connectivity(iot, thing)
    ts = c.get("timestamp")
    fresh = since is None or ts is None or ts / 1000 >= since - 2
    return bool(c.get("connected") and fresh), c


def wait_online(iot: Any, thing: str, timeout: float = 60.0, *, since: float | None = None,
                cancel: threading.Event | None = None, check: Callable[[], None] | None = None,
                poll: float = 0.5) -> dict:
    """Wait until :func:`is_online` (blocking: boto3); returns the connectivity answer.

    Args:
        iot: a boto3 ``iot`` client.
        thing: the thing name.
        timeout: seconds.
        since: only a connection made after this (epoch s) counts (e.g. the flash time).
        cancel: set it to stop waiting (:class:`WaitCancelled`).
        check: called on every poll; may raise to end the wait (a board seen crashing).
        poll: seconds between calls.

    Raises:
        PresenceUnavailable: presence cannot be read (callers fall back to the console).
        NotOnline: not online within ``timeout`` (``last`` holds the last answer).
        WaitCancelled: ``cancel`` was set.
    """
    cancel = cancel or threading.Event()
    deadline = time.monotonic() + timeout
    c: dict = {}
    while time.monotonic() < deadline:
        if cancel.is_set():
            raise WaitCancelled(f"stopped waiting for {thing}")
        try:
            online, c = is_online(iot, thing, since)
        except PresenceUnavailable:
            raise
        except Exception as exc:  # noqa: BLE001 - transient control-plane errors: keep polling
            online, c = False, {"connected": False, "error": str(exc)}
        if online:
            return c
        if check is not None:
            check()
        cancel.wait(poll)
    raise NotOnline(f"{thing} did not come online within {timeout:.0f} s",
                    "check that the network the board joined reaches the endpoint; the board's console tells why",
                    last=c)


def app_client_id(profile: Profile, ephemeral: bool = False) -> str:
    """The app's MQTT client id: stable per user+host+profile (persistent session), or a
    one-off id for short CLI commands (so they never take the GUI's session over)."""
    if ephemeral:
        return f"fleetdesk-cli-{uuid.uuid4().hex[:12]}"
    who = f"{getpass.getuser()}@{socket.gethostname()}/{profile.name}"
    return "fleetdesk-app-" + hashlib.sha256(who.encode()).hexdigest()[:12]


class CloudBackend:
    """Base: what the rest of Fleetdesk asks of "the cloud". Use :func:`get_cloud_backend`.

    Attributes:
        profile: the profile it serves.
        label: "Sandbox" or "AWS" (for texts).
        provisioning_role_arn: the role a provisioning template made by the station names,
            or None when the template must already exist (AWS).
        state_dir: the local cloud's state dir (the sandbox's), None for a remote one.
        billed: changes to this cloud cost money (AWS): commands ask before making them.
    """

    label: ClassVar[str] = ""
    provisioning_role_arn: ClassVar[str | None] = None
    state_dir: Path | None = None  # a local cloud's state dir (the sandbox's); None for a remote one
    billed: ClassVar[bool] = False  # changes cost money: ask the operator first

    def __init__(self, profile: Profile) -> None:
        self.profile = profile

    @property
    def name(self) -> str:
        return self.profile.name

    # -- the profile form -----------------------------------------------------------------
    def check_fields(self) -> None:
        """Field checks beyond :meth:`Profile.validate` for what this cloud needs (host and
        region formats on AWS); the sandbox has none.

        Raises:
            ConfigError: naming the field and what a valid value looks like.
        """

    @property
    def keyring_secret(self) -> bool:
        """The profile's secret access key lives in the OS keyring (the form stores it there)."""
        return False

    # -- control plane -------------------------------------------------------------------
    def client(self, service: str) -> Any:
        """A boto3 client (``iot``, ``iot-data``, ``s3``) with the profile's credentials."""
        raise NotImplementedError

    def iam_client(self) -> Any:
        """A boto3 ``iam`` client, or None where there is no IAM (the sandbox accepts any role)."""
        return None

    def control_plane(self):
        """The async :class:`fleetdesk.cloud.control.ControlPlane` over ``iot`` + ``iot-data``."""
        from fleetdesk.cloud.control import ControlPlane

        return ControlPlane(self.client("iot"), self.client("iot-data"))

    def device_endpoint(self, iot: Any = None) -> DeviceEndpoint:
        """Where boards connect and what CA they trust."""
        raise NotImplementedError

    def target(self) -> CloudTarget:
        """The control plane + device endpoint the flash station uses."""
        iot = self.client("iot")
        ep = self.device_endpoint(iot)
        return CloudTarget(iot, ep.host, ep.port, ep.region, ep.ca_pem, name=self.name, backend=self)

    def wait_online(self, thing: str, timeout: float = 60.0, **kwargs: Any) -> dict:
        """Wait until the thing is online in the cloud's presence (see :func:`wait_online`)."""
        return wait_online(self.client("iot"), thing, timeout, **kwargs)

    # -- the app's MQTT login ------------------------------------------------------------
    def mqtt_settings(self, *, ephemeral: bool = False, **overrides: Any):
        """How the app connects to MQTT (privileged: sees ``$aws/...``) as ConnectionSettings."""
        s = self._mqtt_settings(client_id=app_client_id(self.profile, ephemeral), clean_start=ephemeral)
        for k, v in overrides.items():
            setattr(s, k, v)
        return s

    def _mqtt_settings(self, **common: Any):
        raise NotImplementedError

    # -- OTA -----------------------------------------------------------------------------
    def upload_firmware(self, data: bytes, key: str, *, bucket: str | None = None, s3_client: Any = None) -> str:
        """Store a firmware image where jobs can reference it (blocking); returns the
        ``${aws:iot:s3-presigned-url:...}`` placeholder for the job document."""
        raise NotImplementedError

    # -- the app's local service and status ---------------------------------------------
    def service(self, *, port_base: int | None = None, on_state: Callable[[LauncherState], None] | None = None):
        """What the app starts for this profile: an object with ``state_dir``, ``state``,
        ``async start() -> LauncherState`` and ``async stop()``."""
        raise NotImplementedError

    def attached_state(self) -> LauncherState:
        """The state to show for a session the app did not start the service for."""
        raise NotImplementedError

    def describe(self, state: LauncherState) -> str:
        """One line for the status bar."""
        raise NotImplementedError

    def status_phase(self, state: LauncherState) -> str:
        """The phase the status bar colours by."""
        return state.phase


class SandboxBackend(CloudBackend):
    """The local sandbox for ``profile.state_dir`` (or the per-user default)."""

    label = "Sandbox"
    provisioning_role_arn = SANDBOX_PROVISIONING_ROLE

    @property
    def state_dir(self) -> Path:  # type: ignore[override]
        return Path(self.profile.state_dir) if self.profile.state_dir else sandbox_state_dir()

    def info(self):
        """The running sandbox's :class:`fleetdesk.sandbox.info.SandboxInfo` (the one reader of
        ``endpoint.json``).

        Raises:
            CloudError: the sandbox is not running.
        """
        from fleetdesk.sandbox.info import SandboxInfo

        info = SandboxInfo.load(self.state_dir)
        if info is None:
            raise CloudError(f"the sandbox in {self.state_dir} is not running",
                             "start it with `fleetdesk sandbox up` (or from the app)")
        return info

    def boto3_kwargs(self) -> dict:
        return self.info().boto3_kwargs()

    def client(self, service: str) -> Any:
        import boto3

        kw = self.info().boto3_kwargs()
        return boto3.client(service, config=_botocore_config(), **kw)

    def device_endpoint(self, iot: Any = None) -> DeviceEndpoint:
        info = self.info()
        try:
            ca_pem = Path(info.ca_file).read_bytes()
        except OSError as exc:
            raise CloudError(f"cannot read the sandbox CA {info.ca_file} ({exc})",
                             "restart the sandbox (`fleetdesk sandbox up`)") from exc
        return DeviceEndpoint(info.mqtt_host, int(info.mqtt_port), info.region, ca_pem)

    def _mqtt_settings(self, **common: Any):
        from fleetdesk.cloud.settings import ConnectionSettings

        from awscrt import auth

        # WebSockets + SigV4 with the sandbox's credentials, as AwsBackend with IAM credentials:
        # the app goes through the front that applies IoT Core's per-connection quotas. The
        # internal login (``info.internal_*``) is the sandbox's own machinery, never the app's.
        info = self.info()
        return ConnectionSettings(host=info.mqtt_host, port=int(info.ws_port), ca_file=info.ca_file,
                                  websockets=True, region=info.region,
                                  credentials_provider=auth.AwsCredentialsProvider.new_static(
                                      info.aws_access_key_id, info.aws_secret_access_key), **common)

    def upload_firmware(self, data: bytes, key: str, *, bucket: str | None = None, s3_client: Any = None) -> str:
        from fleetdesk.sandbox import files

        return files.put(self.info().state_dir or self.state_dir, key, data)

    def service(self, *, port_base: int | None = None, on_state: Callable[[LauncherState], None] | None = None):
        return SandboxLauncher(self.state_dir, port_base=port_base, on_state=on_state)

    def attached_state(self) -> LauncherState:
        try:
            endpoint = self.info().to_json()
        except CloudError:
            endpoint = {}
        return LauncherState("running", endpoint, "attached", attached=True)

    def describe(self, state: LauncherState) -> str:
        return f"Sandbox — {state.describe()}"


class _RemoteService:
    """An AWS account needs nothing started locally: it is "running" at once."""

    state_dir = None

    def __init__(self, backend: "AwsBackend", on_state: Callable[[LauncherState], None] | None) -> None:
        self.state = LauncherState()
        self._backend, self._on_state = backend, on_state

    async def start(self) -> LauncherState:
        self.state = self._backend.attached_state()
        if self._on_state is not None:
            self._on_state(self.state)
        return self.state

    async def stop(self) -> None:
        self.state = LauncherState()


class AwsBackend(CloudBackend):
    """An AWS IoT account: boto3 with the profile's credentials source, MQTT over WebSockets
    signed with SigV4 for the app, mTLS on 8883 with Amazon Root CA 1 for boards.

    Two documented overrides in ``profile.extra`` point the AWS code path at something else
    than AWS (e.g. the sandbox, through ``fleetdesk sandbox env``): ``device_ca_file`` (PEM the
    device trusts instead of Amazon Root CA 1) and ``mqtt_port`` (instead of 8883); for the app's
    own WebSockets connection ``app_ca_file`` (instead of the system trust store) and
    ``app_ws_port`` (instead of 443).
    ``extra["ota_bucket"]`` is the S3 bucket OTA images go to.
    """

    label = "AWS"
    billed = True

    def __init__(self, profile: Profile) -> None:
        super().__init__(profile)
        self._session = None

    def boto3_session(self):
        """The boto3 Session of the profile's credentials source (default chain, named profile,
        or access key + keyring secret).

        Raises:
            CloudError: unknown source, no secret in the keyring, or no credentials found.
        """
        if self._session is not None:
            return self._session
        import boto3
        from botocore.exceptions import BotoCoreError

        p = self.profile
        if p.credentials not in ("default-chain", "aws-profile", "keyring"):
            raise CloudError(f"profile {p.name!r}: unknown credentials source {p.credentials!r}",
                             "pick default-chain, aws-profile or keyring in Settings")
        try:
            if p.credentials == "aws-profile":
                session = boto3.Session(profile_name=p.aws_profile or None, region_name=p.region)
            elif p.credentials == "keyring":
                secret = p.secret_key()
                if not (p.access_key_id and secret):
                    raise CloudError(f"profile {p.name!r}: no secret key for {p.access_key_id!r} in the OS keyring",
                                     "enter the access key and secret again in Settings")
                session = boto3.Session(aws_access_key_id=p.access_key_id, aws_secret_access_key=secret,
                                        region_name=p.region)
            else:
                session = boto3.Session(region_name=p.region)
        except BotoCoreError as exc:
            raise CloudError(f"profile {p.name!r}: cannot set up AWS credentials ({exc})",
                             "check the AWS profile name / ~/.aws config") from exc
        if session.get_credentials() is None:
            raise CloudError(f"profile {p.name!r}: no AWS credentials found ({p.credentials})",
                             "configure credentials (aws configure / SSO login, env vars) or pick another source")
        self._session = session
        return session

    def check_fields(self) -> None:
        p = self.profile
        endpoint = p.endpoint.strip()
        if endpoint and not HOST_RE.match(endpoint):
            raise ConfigError(
                f"endpoint {endpoint!r} is not a host name",
                "give the host only, e.g. abc123-ats.iot.eu-west-1.amazonaws.com (no https://, no port)",
            )
        if not AWS_REGION_RE.match(p.region):
            raise ConfigError(f"region {p.region!r} is not an AWS region", "e.g. us-east-1 or eu-west-1")

    @property
    def keyring_secret(self) -> bool:
        return self.profile.credentials == "keyring"

    def iam_client(self) -> Any:
        return self.client("iam")

    def client(self, service: str) -> Any:
        return self.boto3_session().client(service, region_name=self.profile.region, config=_botocore_config())

    def device_endpoint(self, iot: Any = None) -> DeviceEndpoint:
        """``profile.endpoint`` (DescribeEndpoint iot:Data-ATS when empty) on 8883, Amazon Root CA 1."""
        from botocore.exceptions import BotoCoreError, ClientError

        p = self.profile
        endpoint = p.endpoint
        if not endpoint:
            try:
                endpoint = (iot or self.client("iot")).describe_endpoint(endpointType="iot:Data-ATS")["endpointAddress"]
            except (BotoCoreError, ClientError) as exc:
                raise CloudError(f"profile {p.name!r}: could not look up the AWS IoT endpoint ({exc})",
                                 "paste it in Settings (aws iot describe-endpoint --endpoint-type "
                                 "iot:Data-ATS)") from exc
        extra = p.extra or {}
        ca_path = Path(extra.get("device_ca_file") or AMAZON_ROOT_CA)
        try:
            ca_pem = ca_path.read_bytes()
        except OSError as exc:
            raise CloudError(f"cannot read the device CA {ca_path} ({exc})",
                             "fix or remove extra.device_ca_file in the profile") from exc
        return DeviceEndpoint(endpoint, int(extra.get("mqtt_port") or AWS_MQTT_PORT), p.region, ca_pem)

    def _mqtt_settings(self, **common: Any):
        from awscrt import auth

        from fleetdesk.cloud.settings import ConnectionSettings

        p = self.profile
        p.validate()
        if p.credentials == "aws-profile":
            provider = auth.AwsCredentialsProvider.new_profile(profile_name=p.aws_profile)
        elif p.credentials == "keyring":
            provider = auth.AwsCredentialsProvider.new_static(p.access_key_id, p.secret_key() or "")
        else:
            provider = auth.AwsCredentialsProvider.new_default_chain()
        extra = p.extra or {}
        return ConnectionSettings(host=p.endpoint, port=int(extra.get("app_ws_port") or 443), websockets=True,
                                  region=p.region, ca_file=extra.get("app_ca_file") or None,
                                  credentials_provider=provider, **common)

    def upload_firmware(self, data: bytes, key: str, *, bucket: str | None = None, s3_client: Any = None) -> str:
        from fleetdesk.cloud.errors import ControlPlaneError

        bucket = bucket or (self.profile.extra or {}).get("ota_bucket")
        if not bucket:
            raise ControlPlaneError("an OTA upload on AWS needs an S3 bucket",
                                    "set extra.ota_bucket in the profile (the bucket devices' job URLs are "
                                    "presigned for)", code="NoBucket")
        s3 = s3_client or self.client("s3")
        try:
            s3.put_object(Bucket=bucket, Key=key, Body=data)
        except Exception as exc:
            raise ControlPlaneError(f"upload to s3://{bucket}/{key} failed: {exc}",
                                    "check the bucket name and the credentials' s3:PutObject right",
                                    code=type(exc).__name__) from exc
        return "${aws:iot:s3-presigned-url:https://%s.s3.amazonaws.com/%s}" % (bucket, key)

    def service(self, *, port_base: int | None = None, on_state: Callable[[LauncherState], None] | None = None):
        return _RemoteService(self, on_state)

    def attached_state(self) -> LauncherState:
        p = self.profile
        return LauncherState("running", {"mqtt_host": p.endpoint, "mqtt_port": 443, "region": p.region})

    def describe(self, state: LauncherState) -> str:
        return f"AWS {self.profile.region} — {self.profile.endpoint or 'no endpoint'}"

    def status_phase(self, state: LauncherState) -> str:
        return "running"


_BACKENDS: dict[str, type[CloudBackend]] = {"sandbox": SandboxBackend, "aws": AwsBackend}


def get_cloud_backend(profile: Profile, backend: type[CloudBackend] | None = None, *,
                      state_dir: str | Path | None = None) -> CloudBackend:
    """The backend for a profile: the only place that branches on ``profile.kind``.

    Args:
        profile: a sandbox or aws profile.
        backend: a backend class to use instead of the one the profile's kind names.
        state_dir: a sandbox state dir overriding ``profile.state_dir`` (``--state-dir``).

    Raises:
        ConfigError: the profile's kind is unknown.
    """
    if backend is None:
        backend = _BACKENDS.get(profile.kind)
        if backend is None:
            profile.validate()  # names the bad kind
            raise CloudError(f"profile {profile.name!r}: no backend for {profile.kind!r}")
    if state_dir:
        profile = dataclasses.replace(profile, state_dir=str(state_dir))
    return backend(profile)
