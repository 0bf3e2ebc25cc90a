"""A board's cloud identity at flash time: thing + cert in the active profile, device files.

A :class:`~fleetdesk.cloud.backend.CloudTarget` (from the profile's cloud backend) is where
boards will connect (endpoint, port, CA) plus a boto3 ``iot`` client for the control plane:
the local sandbox or AWS. `mint_identity` creates (or reuses) the
thing for a MAC, a fresh key + certificate and the thing-scoped policy; `device_files`
turns it into the files the firmware reads from its littlefs ``vfs`` partition.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from fleetdesk.cloud.backend import CloudTarget
from fleetdesk.cloud.identity import create_device_identity
from fleetdesk.errors import CloudError
from fleetdesk.paths import data_dir, write_private


@dataclass
class MintedIdentity:
    thing_name: str
    certificate_id: str
    certificate_pem: str
    private_key_pem: str = field(repr=False)  # never in a log line or traceback
    pop: str = field(repr=False)
    key_path: Path


def thing_name_for(template: str, mac: str, chip: str = "", n: int = 0, serial: int = 0) -> str:
    """Render a thing-name template: ``fd-{mac}`` -> ``fd-aabbccddeeff``; ``{serial}`` (e.g.
    ``fd-{serial:06d}``) is the board's line-wide serial number from the ledger."""
    name = template.format(mac=mac.replace(":", "").lower(), chip=chip.lower().replace("-", ""), n=n, serial=serial)
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
    except Exception:  # noqa: BLE001 - best effort: the rollback then deactivates only what it knows
        return set()


def _deactivate_new_certs(target: CloudTarget, thing: str, before: set[str]) -> None:
    for arn in _thing_certs(target, thing) - before:
        try:
            target.deactivate(arn.rsplit("/", 1)[-1])
        except Exception:  # noqa: BLE001 - recorded on the run: recovery retries
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
