"""A board's cloud identity at flash time: thing + cert in the active profile, device files.

`CloudTarget` is where boards will connect (endpoint, port, CA) plus a boto3 ``iot`` client
for the control plane: the local sandbox or AWS. `mint_identity` creates (or reuses) the
thing for a MAC, a fresh key + certificate and the thing-scoped policy; `device_files`
turns it into the files the firmware reads from its littlefs ``vfs`` partition.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fleetdesk.errors import CloudError
from fleetdesk.paths import RESOURCES_DIR, data_dir, write_private

AMAZON_ROOT_CA = RESOURCES_DIR / "ca" / "AmazonRootCA1.pem"
AWS_MQTT_PORT = 8883
# GetThingConnectivityData error codes meaning "presence is not available to us here"
# (no permission, or fleet indexing with thing connectivity is off): the station then falls
# back to the board's own console report.
PRESENCE_UNAVAILABLE = ("AccessDeniedException", "UnauthorizedException", "InvalidRequestException",
                        "IndexNotReadyException", "ForbiddenException")


class PresenceUnavailable(CloudError):
    """GetThingConnectivityData cannot be used with this profile (access or indexing)."""


@dataclass
class CloudTarget:
    """Control plane client and the device endpoint of one profile.

    Attributes:
        iot: boto3 ``iot`` client.
        endpoint: MQTT host boards connect to.
        port: MQTT/TLS port.
        region: AWS region.
        ca_pem: CA bundle the device trusts (PEM).
        name: profile label for records.
    """

    iot: Any
    endpoint: str
    port: int
    region: str
    ca_pem: bytes
    name: str = "sandbox"
    kind: str = "sandbox"

    @classmethod
    def from_profile(cls, profile, state_dir: str | Path | None = None) -> "CloudTarget":
        """The target of a :class:`fleetdesk.config.Profile`: its sandbox, or its AWS account.

        Args:
            profile: a sandbox or aws profile.
            state_dir: sandbox only; overrides ``profile.state_dir``.
        """
        if profile.kind == "aws":
            return cls.from_aws(profile)
        target = cls.from_sandbox(state_dir or profile.state_dir)
        target.name = profile.name
        return target

    @classmethod
    def from_aws(cls, profile) -> "CloudTarget":
        """An AWS IoT account through boto3 with the profile's credentials source.

        The ``iot`` client runs in ``profile.region`` with a Session from the default chain
        (env, ~/.aws, SSO), the named profile, or the access key + keyring secret. Boards
        connect with mTLS to ``profile.endpoint`` (DescribeEndpoint iot:Data-ATS when empty)
        on port 8883 and trust Amazon Root CA 1 (bundled in resources/ca/).

        Two documented overrides in ``profile.extra`` exist for pointing the AWS code path at
        something else than AWS (e.g. the sandbox, through ``fleetdesk sandbox env``):
        ``device_ca_file`` (PEM the device trusts instead of Amazon Root CA 1) and
        ``mqtt_port`` (instead of 8883).

        Raises:
            CloudError: no credentials, no secret in the keyring, no endpoint, or the CA
                file cannot be read.
        """
        import boto3
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError, ClientError

        from fleetdesk.errors import FleetdeskError

        try:
            if profile.credentials not in ("default-chain", "aws-profile", "keyring"):
                raise CloudError(f"profile {profile.name!r}: unknown credentials source {profile.credentials!r}",
                                 "pick default-chain, aws-profile or keyring in Settings")
            if profile.credentials == "aws-profile":
                session = boto3.Session(profile_name=profile.aws_profile or None, region_name=profile.region)
            elif profile.credentials == "keyring":
                secret = profile.secret_key()
                if not (profile.access_key_id and secret):
                    raise CloudError(f"profile {profile.name!r}: no secret key for {profile.access_key_id!r} "
                                     "in the OS keyring", "enter the access key and secret again in Settings")
                session = boto3.Session(aws_access_key_id=profile.access_key_id, aws_secret_access_key=secret,
                                        region_name=profile.region)
            else:
                session = boto3.Session(region_name=profile.region)
        except FleetdeskError:
            raise
        except BotoCoreError as exc:
            raise CloudError(f"profile {profile.name!r}: cannot set up AWS credentials ({exc})",
                             "check the AWS profile name / ~/.aws config") from exc
        if session.get_credentials() is None:
            raise CloudError(f"profile {profile.name!r}: no AWS credentials found ({profile.credentials})",
                             "configure credentials (aws configure / SSO login, env vars) or pick another source")
        cfg = Config(connect_timeout=5, read_timeout=20, retries={"max_attempts": 2, "mode": "standard"})
        iot = session.client("iot", region_name=profile.region, config=cfg)
        endpoint = profile.endpoint
        if not endpoint:
            try:
                endpoint = iot.describe_endpoint(endpointType="iot:Data-ATS")["endpointAddress"]
            except (BotoCoreError, ClientError) as exc:
                raise CloudError(f"profile {profile.name!r}: could not look up the AWS IoT endpoint ({exc})",
                                 "paste it in Settings (aws iot describe-endpoint --endpoint-type "
                                 "iot:Data-ATS)") from exc
        extra = profile.extra or {}
        ca_path = Path(extra.get("device_ca_file") or AMAZON_ROOT_CA)
        try:
            ca_pem = ca_path.read_bytes()
        except OSError as exc:
            raise CloudError(f"cannot read the device CA {ca_path} ({exc})",
                             "fix or remove extra.device_ca_file in the profile") from exc
        return cls(iot, endpoint, int(extra.get("mqtt_port") or AWS_MQTT_PORT), profile.region, ca_pem,
                   name=profile.name, kind="aws")

    @classmethod
    def from_sandbox(cls, state_dir: str | Path | None = None) -> "CloudTarget":
        """The running local sandbox (raises CloudError when it is not running)."""
        import boto3

        from fleetdesk.paths import sandbox_state_dir
        from fleetdesk.sandbox.info import SandboxInfo

        state = Path(state_dir) if state_dir else sandbox_state_dir()
        info = SandboxInfo.load(state)
        if info is None:
            raise CloudError(f"the sandbox in {state} is not running",
                             "start it with `fleetdesk sandbox up` (or from the app), or flash without --identity")
        from botocore.config import Config

        cfg = Config(connect_timeout=5, read_timeout=20, retries={"max_attempts": 2, "mode": "standard"})
        iot = boto3.client("iot", config=cfg, **info.boto3_kwargs())
        return cls(iot, info.mqtt_host, int(info.mqtt_port), info.region, Path(info.ca_file).read_bytes())

    def connectivity(self, thing: str) -> dict:
        """GetThingConnectivityData: {"connected": bool, "timestamp": epoch ms, ...}.

        Raises:
            PresenceUnavailable: the call is refused for access or indexing reasons (on AWS
                it needs fleet indexing with thing connectivity on).
        """
        from botocore.exceptions import ClientError

        try:
            resp = self.iot.get_thing_connectivity_data(thingName=thing)
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

    def deactivate(self, certificate_id: str) -> None:
        """Set a certificate INACTIVE (rollback of an identity a board never used)."""
        self.iot.update_certificate(certificateId=certificate_id, newStatus="INACTIVE")


@dataclass
class MintedIdentity:
    thing_name: str
    certificate_id: str
    certificate_pem: str
    private_key_pem: str = field(repr=False)  # never in a log line or traceback
    pop: str = field(repr=False)
    key_path: Path


def thing_name_for(template: str, mac: str, chip: str = "", n: int = 0) -> str:
    """Render a thing-name template: ``fd-{mac}`` -> ``fd-aabbccddeeff``."""
    name = template.format(mac=mac.replace(":", "").lower(), chip=chip.lower().replace("-", ""), n=n)
    if not name or len(name) > 128 or any(c not in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:_-"
                                           for c in name):
        raise CloudError(f"thing name {name!r} from template {template!r} is not valid",
                         "use letters, digits, ':', '_' and '-' (at most 128), e.g. fd-{mac}")
    return name


def mint_identity(target: CloudTarget, thing_name: str, *, mac: str, product: str | None = None,
                  on_certificate=None) -> MintedIdentity:
    """Create (or reuse) the thing and make a new key + certificate with the thing policy.

    The private key and the BLE proof-of-possession secret are stored 0600 in the app data
    dir (devices/<thing>/), never logged.

    Raises:
        CloudError: the cloud refused or did not answer (no certificate is left ACTIVE:
            a certificate created before the failure is set INACTIVE).
    """
    ident = mint_in_cloud(target, thing_name, mac=mac, product=product, on_certificate=on_certificate)
    return store_identity_files(thing_name, ident.certificate_id, ident.certificate_pem, ident.private_key_pem)


def mint_in_cloud(target: CloudTarget, thing_name: str, *, mac: str, product: str | None = None,
                  on_certificate=None):
    """The cloud half of `mint_identity` (a ``DeviceIdentity``, key in memory, nothing stored):
    what a station mints ahead, while the board is still being read."""
    attributes = {"mac": mac.replace(":", "")}
    if product:
        attributes["product"] = product
    try:
        from fleetdesk.cloud.identity import create_device_identity
    except ImportError as exc:
        raise CloudError("the cloud identity module is not available", "update Fleetdesk") from exc
    before = _thing_certs(target, thing_name)
    made: list[str] = []

    def created(certificate_id: str) -> None:
        made.append(certificate_id)
        if on_certificate is not None:
            on_certificate(certificate_id)

    try:
        ident = create_device_identity(target.iot, thing_name, attributes=attributes, on_certificate=created)
    except Exception as exc:
        _deactivate_new_certs(target, thing_name, before)
        for certificate_id in made:  # created but maybe never attached: not found through the thing
            try:
                target.deactivate(certificate_id)
            except Exception:  # noqa: BLE001 - recorded on the run: recovery retries
                pass
        raise CloudError(f"could not create the identity for {thing_name} in the cloud ({exc})",
                         "check the network and the profile; nothing was flashed") from exc
    return ident


def store_identity_files(thing_name: str, certificate_id: str, certificate_pem: str,
                         private_key_pem: str, pop: str | None = None) -> MintedIdentity:
    """Keep a board's key (0600), certificate and BLE PoP secret (0600; a new one unless given)
    in the app data dir."""
    pop = pop or secrets.token_hex(16)
    folder = data_dir() / "devices" / thing_name
    key_path = folder / f"{certificate_id[:16]}.private.pem.key"
    write_private(key_path, private_key_pem.encode())
    write_private(folder / "pop.txt", pop.encode())
    (folder / f"{certificate_id[:16]}.cert.pem").write_text(certificate_pem)
    return MintedIdentity(thing_name, certificate_id, certificate_pem, private_key_pem, pop, key_path)


def stored_identity(target: CloudTarget, thing_name: str, certificate_id: str) -> MintedIdentity | None:
    """The identity a board already has, from the key files kept at flash time, if its
    certificate is still ACTIVE in the cloud (None otherwise: then a new one is minted)."""
    folder = data_dir() / "devices" / thing_name
    key_path = folder / f"{certificate_id[:16]}.private.pem.key"
    cert_path = folder / f"{certificate_id[:16]}.cert.pem"
    pop_path = folder / "pop.txt"
    if not (key_path.exists() and cert_path.exists() and pop_path.exists()):
        return None
    try:
        desc = target.iot.describe_certificate(certificateId=certificate_id)["certificateDescription"]
    except Exception as exc:
        raise CloudError(f"could not check the certificate of {thing_name} ({exc})",
                         "check the network and the profile; nothing was flashed") from exc
    if desc.get("status") != "ACTIVE":
        return None
    return MintedIdentity(thing_name, certificate_id, cert_path.read_text(), key_path.read_text(),
                          pop_path.read_text().strip(), key_path)


def _thing_certs(target: CloudTarget, thing: str) -> set[str]:
    try:
        return set(target.iot.list_thing_principals(thingName=thing).get("principals", []))
    except Exception:
        return set()


def _deactivate_new_certs(target: CloudTarget, thing: str, before: set[str]) -> None:
    for arn in _thing_certs(target, thing) - before:
        try:
            target.deactivate(arn.rsplit("/", 1)[-1])
        except Exception:
            pass


def der_to_pem(der: bytes, kind: str) -> str:
    """PEM text around DER bytes kept exactly (``kind``: "cert" or "key"; a key's label follows
    its format: PKCS#8, PKCS#1 RSA or SEC1 EC), so `_pem_to_der` gives the same bytes back."""
    import base64

    if kind == "cert":
        label = "CERTIFICATE"
    else:  # SEQUENCE { INTEGER version, <next> }: SEQUENCE = PKCS#8, INTEGER = RSA, OCTET STRING = EC
        i = 2 + (der[1] & 0x7F if der[1] & 0x80 else 0)
        i += 2 + der[i + 1]
        label = {0x30: "PRIVATE KEY", 0x02: "RSA PRIVATE KEY", 0x04: "EC PRIVATE KEY"}.get(der[i], "PRIVATE KEY")
    body = base64.b64encode(der).decode()
    lines = "\n".join(body[i:i + 64] for i in range(0, len(body), 64))
    return f"-----BEGIN {label}-----\n{lines}\n-----END {label}-----\n"


def _pem_to_der(pem: str) -> bytes:
    """The first PEM block's DER bytes (format kept: PKCS#1/SEC1/PKCS#8 keys, X.509 certs)."""
    import base64

    body, inside = [], False
    for line in pem.strip().splitlines():
        line = line.strip()
        if line.startswith("-----BEGIN"):
            inside = True
        elif line.startswith("-----END"):
            break
        elif inside and line and ":" not in line:
            body.append(line)
    if not body:
        raise CloudError("the cloud returned a certificate or key that is not PEM", "retry; report it if it persists")
    return base64.b64decode("".join(body))


def with_station_fields(config: dict, product: str | None, wifi: dict | None) -> dict:
    """Set the station's product id and site Wi-Fi in a device config (in place; returned)."""
    if product:
        config["product"] = product
    if wifi:
        config["wifi"] = {"ssid": wifi.get("ssid", ""), "password": wifi.get("password", "")}
    return config


def device_files(identity: MintedIdentity, target: CloudTarget, *, product: str | None = None,
                 wifi: dict | None = None) -> dict[str, bytes]:
    """The per-device files for the vfs image: /config.json and /certs/{ca,cert,key}.der."""
    ca_der = _pem_to_der(target.ca_pem.decode())
    config = {
        "thing_name": identity.thing_name,
        "endpoint": target.endpoint,
        "port": target.port,
        "region": target.region,
        "ca": "/certs/ca.der",
        "cert": "/certs/cert.der",
        "key": "/certs/key.der",
        "pop": identity.pop,
    }
    with_station_fields(config, product, wifi)
    return {
        "/config.json": json.dumps(config, indent=1).encode(),
        "/certs/ca.der": ca_der,
        "/certs/cert.der": _pem_to_der(identity.certificate_pem),
        "/certs/key.der": _pem_to_der(identity.private_key_pem),
    }
