"""The line's own certificate authority: stations sign each board's certificate locally
(``cryptography``) and AWS IoT activates it on the board's first connect (just-in-time
provisioning), so the floor needs no AWS credentials that can create things or certificates.

Files (``<data dir>/line-ca/``): ``ca.key`` (0600, the CA's private key: keep it on the station
that owns the CA or on an admin machine), ``ca.pem``, ``ca.json`` (the registered CA id and
the CAs rotated out). `register` is the one-time admin step: GetRegistrationCode, a
verification certificate (CN = the code) signed by the CA key, RegisterCACertificate with
auto-registration on and the JITP template (thing named after the certificate's CN, the
thing policy, thing groups). `rotate` makes a new CA, registers it, and turns
auto-registration off on the old one (its boards keep working; no new board joins under it).
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from fleetdesk.errors import FleetdeskError
from fleetdesk.paths import data_dir, write_private

DEFAULT_POLICY = "fleetdesk-thing-policy"  # the thing policy the station's own mint attaches (cloud/identity.py)


class LineCaError(FleetdeskError):
    """The line CA is missing, already made, or its files cannot be used."""


def jitp_template(policy: str = DEFAULT_POLICY, groups: list[str] | None = None) -> str:
    """The JITP template AWS runs for a new board: thing = the certificate's CN, the policy,
    the groups, certificate ACTIVE."""
    thing: dict[str, object] = {"ThingName": {"Ref": "AWS::IoT::Certificate::CommonName"},
             "AttributePayload": {"provisioned": "jitp"}}
    if groups:
        thing["ThingGroups"] = list(groups)
    return json.dumps({
        "Parameters": {"AWS::IoT::Certificate::CommonName": {"Type": "String"},
                       "AWS::IoT::Certificate::Id": {"Type": "String"}},
        "Resources": {
            "thing": {"Type": "AWS::IoT::Thing", "Properties": thing,
                      "OverrideSettings": {"AttributePayload": "MERGE"}},
            "certificate": {"Type": "AWS::IoT::Certificate",
                            "Properties": {"CertificateId": {"Ref": "AWS::IoT::Certificate::Id"}, "Status": "ACTIVE"}},
            "policy": {"Type": "AWS::IoT::Policy", "Properties": {"PolicyName": policy}},
        },
    })


def _ensure_group(iot, group: str) -> None:
    """Create thing group ``group`` unless it exists (made meanwhile by someone else counts)."""
    try:
        iot.describe_thing_group(thingGroupName=group)
        return
    except iot.exceptions.ResourceNotFoundException:
        pass
    try:
        iot.create_thing_group(thingGroupName=group)
    except iot.exceptions.ResourceAlreadyExistsException:
        pass


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Fleetdesk line"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


@dataclass
class DeviceCert:
    thing: str
    certificate_pem: str
    ca_pem: str
    private_key_pem: str = field(repr=False)  # never in a log line or traceback

    @property
    def chain_pem(self) -> str:
        """What the board presents for JITP: its certificate followed by the CA's."""
        return self.certificate_pem + self.ca_pem


class LineCA:
    """The line CA in ``folder`` (default ``<data dir>/line-ca``)."""

    def __init__(self, folder: Path | str | None = None) -> None:
        self.folder = Path(folder) if folder else data_dir() / "line-ca"

    @property
    def key_file(self) -> Path:
        return self.folder / "ca.key"

    @property
    def cert_file(self) -> Path:
        return self.folder / "ca.pem"

    def exists(self) -> bool:
        return self.cert_file.exists()

    def info(self) -> dict:
        try:
            return json.loads((self.folder / "ca.json").read_text())
        except (OSError, ValueError):
            return {}

    def _save_info(self, info: dict) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "ca.json").write_text(json.dumps(info, indent=1))

    def create(self, name: str = "Fleetdesk line CA", *, years: int = 10) -> str:
        """Make the CA key (0600) and its self-signed certificate; returns the certificate PEM.

        Raises:
            LineCaError: a line CA already exists here (use rotate).
        """
        if self.exists() or self.key_file.exists():
            raise LineCaError(f"a line CA already exists in {self.folder}",
                              "use `fleetdesk line ca rotate` to replace it")
        key = ec.generate_private_key(ec.SECP256R1())
        now = _dt.datetime.now(_dt.timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(_name(name)).issuer_name(_name(name))
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - _dt.timedelta(minutes=5)).not_valid_after(now + _dt.timedelta(days=365 * years))
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                             data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                             crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                .sign(key, hashes.SHA256()))
        write_private(self.key_file, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
        self.folder.mkdir(parents=True, exist_ok=True)
        self.cert_file.write_text(_pem(cert))
        return _pem(cert)

    def _load(self):
        if not self.exists():
            raise LineCaError(f"no line CA in {self.folder}", "create one: fleetdesk line ca create")
        cert = x509.load_pem_x509_certificate(self.cert_file.read_bytes())
        if not self.key_file.exists():
            raise LineCaError(f"the line CA's private key ({self.key_file}) is not on this machine",
                              "sign on the machine that holds it, or copy the key there (0600)")
        key = serialization.load_pem_private_key(self.key_file.read_bytes(), password=None)
        return cert, key

    def sign(self, cn: str, *, public_key=None, years: int = 20) -> x509.Certificate:
        ca, key = self._load()
        now = _dt.datetime.now(_dt.timezone.utc)
        return (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
                .issuer_name(ca.subject).public_key(public_key).serial_number(x509.random_serial_number())
                .not_valid_before(now - _dt.timedelta(minutes=5)).not_valid_after(now + _dt.timedelta(days=365 * years))
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.public_key()), critical=False)
                .sign(key, hashes.SHA256()))

    def sign_device(self, thing: str) -> DeviceCert:
        """A new key and a certificate for board ``thing`` (CN = the thing name), signed here,
        with no cloud call."""
        device_key = ec.generate_private_key(ec.SECP256R1())
        cert = self.sign(thing, public_key=device_key.public_key())
        key_pem = device_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()).decode()
        return DeviceCert(thing, _pem(cert), self.cert_file.read_text(), key_pem)

    def register(self, iot, *, policy: str = DEFAULT_POLICY, groups: list[str] | None = None,
                 role_arn: str = "", device=None) -> str:
        """Register the CA with AWS IoT (the one-time admin step); returns its CA certificate id.
        The thing policy JITP attaches is created when missing (the stock one for the default),
        and so are the thing groups (JITP fails for a board whose template names a missing group).

        Args:
            iot: a boto3 ``iot`` client with rights to register CAs.
            device: where boards connect (a ``DeviceEndpoint``: endpoint, port, region, the
                server CA they trust), kept in ``ca.json`` so a station flashing in line-CA
                mode needs no cloud call and no AWS credentials (`device_endpoint`).
        """
        from fleetdesk.cloud.identity import ensure_policy

        ca, key = self._load()
        ensure_policy(iot, policy)
        for group in groups or []:
            _ensure_group(iot, group)
        code = iot.get_registration_code()["registrationCode"]
        verification_key = ec.generate_private_key(ec.SECP256R1())
        verification = self.sign(code, public_key=verification_key.public_key(), years=1)
        config = {"templateBody": jitp_template(policy, groups)}
        if role_arn:
            config["roleArn"] = role_arn
        out = iot.register_ca_certificate(caCertificate=_pem(ca), verificationCertificate=_pem(verification),
                                          setAsActive=True, allowAutoRegistration=True, registrationConfig=config)
        info = self.info()
        info.update(certificateId=out["certificateId"], certificateArn=out["certificateArn"], policy=policy,
                    groups=list(groups or []))
        if device is not None:
            info["device"] = {"endpoint": device.host, "port": device.port, "region": device.region,
                              "ca_pem": device.ca_pem.decode()}
        self._save_info(info)
        return out["certificateId"]

    def device_target(self):
        """Where this line's boards connect, as `register` kept it: a ``CloudTarget`` with no
        control plane (``iot`` None: a line-CA station makes no cloud call).

        Raises:
            LineCaError: the CA is missing here, or was never registered with a device endpoint.
        """
        from fleetdesk.cloud.backend import CloudTarget

        if not self.exists():
            raise LineCaError(f"no line CA in {self.folder}",
                              "copy the line's CA folder (ca.pem, ca.key 0600, ca.json) from the admin machine, or "
                              "create and register one: fleetdesk line ca create, then register")
        d = self.info().get("device")
        if not d or not self.info().get("certificateId"):
            raise LineCaError(f"the line CA in {self.folder} is not registered with the cloud yet",
                              "register it once on the admin machine (fleetdesk line ca register) and copy its "
                              "ca.json to this station")
        return CloudTarget(None, d["endpoint"], int(d["port"]), d.get("region"), d["ca_pem"].encode(), name="line-ca")

    def rotate(self, iot, **register_kw) -> tuple[str, str | None]:
        """A new CA replaces this one: made, registered, and the old one's auto-registration
        turned off (its boards stay ACTIVE). Returns (new id, old id)."""
        old = self.info()
        old_id = old.get("certificateId")
        if self.exists():
            stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
            archive = self.folder / f"rotated-{stamp}"
            archive.mkdir(parents=True)
            for f in ("ca.key", "ca.pem", "ca.json"):
                if (self.folder / f).exists():
                    (self.folder / f).replace(archive / f)
        self.create()
        register_kw.setdefault("policy", old.get("policy") or DEFAULT_POLICY)
        register_kw.setdefault("groups", old.get("groups") or None)
        new_id = self.register(iot, **register_kw)
        if old.get("device") and "device" not in self.info():  # the boards' endpoint carries over
            self._save_info({**self.info(), "device": old["device"]})
        if old_id:
            iot.update_ca_certificate(certificateId=old_id, newAutoRegistrationStatus="DISABLE")
            info = self.info()
            info["rotated"] = [*old.get("rotated", []), old_id]
            self._save_info(info)
        return new_id, old_id
