"""The sandbox's certificate authority, made with `cryptography` on first start.

It signs the broker's server certificate (localhost, 127.0.0.1, ::1) and every device
certificate; it also writes the certificate revocation list (CRL) that makes mosquitto
refuse INACTIVE/REVOKED certificates at the TLS handshake.

A certificate's id is the SHA-256 hex of its DER bytes (as in AWS IoT). Every device
certificate gets a unique subject CN: the broker uses the CN as the client's identity.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import ipaddress
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fleetdesk.errors import SandboxError
from fleetdesk.paths import write_private

CA_CERT = "ca.pem"
CA_KEY = "ca.key"
SERVER_CERT = "server.pem"
SERVER_KEY = "server.key"
CRL_FILE = "crl.pem"

_TEN_YEARS = _dt.timedelta(days=3650)
_ORG = "Fleetdesk Sandbox"


class BadCsrError(ValueError):
    """A certificate signing request did not parse or its signature is wrong."""


@dataclass(frozen=True)
class IssuedCertificate:
    """A device certificate the CA signed.

    Attributes:
        certificate_id: SHA-256 hex of the DER (64 hex characters).
        certificate_pem: the certificate, PEM.
        common_name: the unique subject CN (the broker's identity for this cert).
        serial: the X.509 serial number (what the CRL lists).
        not_after: expiry.
    """

    certificate_id: str
    certificate_pem: str
    common_name: str
    serial: int
    not_after: _dt.datetime


def certificate_id(cert_pem: str | bytes) -> str:
    """AWS-style certificate id of a PEM certificate: SHA-256 hex of its DER."""
    data = cert_pem.encode() if isinstance(cert_pem, str) else cert_pem
    cert = x509.load_pem_x509_certificate(data)
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


def _pem_key(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


class SandboxCA:
    """The CA files in ``<state_dir>/ca``; create with :meth:`load_or_create`."""

    def __init__(self, directory: Path, cert: x509.Certificate, key) -> None:
        self.directory = directory
        self.cert = cert
        self._key = key
        # the files, as mosquitto and the TLS fronts load them
        self.ca_file = directory / CA_CERT
        self.server_cert_file = directory / SERVER_CERT
        self.server_key_file = directory / SERVER_KEY
        self.crl_file = directory / CRL_FILE

    @property
    def ca_pem(self) -> str:
        return self.cert.public_bytes(serialization.Encoding.PEM).decode()

    @classmethod
    def load_or_create(cls, directory: Path) -> "SandboxCA":
        """Load the CA from ``directory`` or make a new one (plus server cert and empty CRL)."""
        directory.mkdir(parents=True, exist_ok=True)
        cert_path, key_path = directory / CA_CERT, directory / CA_KEY
        if cert_path.exists() != key_path.exists():
            raise SandboxError(
                f"the sandbox CA in {directory} is incomplete (one of {CA_CERT}/{CA_KEY} is missing)",
                "restore the missing file, or start the sandbox with a new --state-dir",
            )
        if cert_path.exists():
            try:
                cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
                key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
            except (ValueError, TypeError, OSError) as exc:
                raise SandboxError(
                    f"the sandbox CA in {directory} cannot be read ({exc})",
                    "restore it from a backup, or start the sandbox with a new --state-dir",
                ) from exc
            ca = cls(directory, cert, key)
        else:
            ca = cls._create(directory)
        if not ca.server_cert_file.exists() or not ca.server_key_file.exists():
            ca._write_server_cert()
        if not ca.crl_file.exists():
            ca.write_crl([])
        return ca

    @classmethod
    def _create(cls, directory: Path) -> "SandboxCA":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, _ORG),
                x509.NameAttribute(NameOID.COMMON_NAME, f"Fleetdesk Sandbox Root CA {uuid.uuid4().hex[:8]}"),
            ]
        )
        now = _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _dt.timedelta(days=1))
            .not_valid_after(now + 2 * _TEN_YEARS)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=True,
                    crl_sign=True, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        write_private(directory / CA_KEY, _pem_key(key))
        (directory / CA_CERT).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return cls(directory, cert, key)

    def ensure_server_names(self, names: list[str]) -> bool:
        """Make sure the server certificate covers ``names`` (host names or IPs); re-issue it if not.

        Returns:
            True if a new server certificate was written.
        """
        cert = x509.load_pem_x509_certificate(self.server_cert_file.read_bytes())
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            have = {str(v) for v in san.get_values_for_type(x509.IPAddress)} | set(san.get_values_for_type(x509.DNSName))
        except x509.ExtensionNotFound:
            have = set()
        wanted = {"localhost", "127.0.0.1", "::1", *names}
        if wanted <= have:
            return False
        self._write_server_cert(sorted(wanted - {"localhost", "127.0.0.1", "::1"}))
        return True

    def _write_server_cert(self, extra_names: Sequence[str] = ()) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        names: list[x509.GeneralName] = [
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.IPAddress(ipaddress.ip_address("::1")),
        ]
        for name in extra_names:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                names.append(x509.DNSName(name))
        san = x509.SubjectAlternativeName(names)
        builder = self._builder(key.public_key(), "localhost", server=True).add_extension(san, critical=False)
        cert = builder.sign(self._key, hashes.SHA256())
        write_private(self.server_key_file, _pem_key(key))
        self.server_cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    def _builder(self, public_key, common_name: str, *, server: bool) -> x509.CertificateBuilder:
        now = _now()
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        return (
            x509.CertificateBuilder()
            .subject_name(
                x509.Name(
                    [
                        x509.NameAttribute(NameOID.ORGANIZATION_NAME, _ORG),
                        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                    ]
                )
            )
            .issuer_name(self.cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _dt.timedelta(minutes=5))
            .not_valid_after(now + _TEN_YEARS)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()), critical=False
            )
        )

    # -- device certificates ------------------------------------------------------------
    def issue(self, public_key) -> IssuedCertificate:
        """Sign a device certificate for ``public_key`` with a fresh unique CN."""
        common_name = f"fleetdesk-device-{uuid.uuid4().hex}"
        cert = self._builder(public_key, common_name, server=False).sign(self._key, hashes.SHA256())
        der = cert.public_bytes(serialization.Encoding.DER)
        return IssuedCertificate(
            certificate_id=hashlib.sha256(der).hexdigest(),
            certificate_pem=cert.public_bytes(serialization.Encoding.PEM).decode(),
            common_name=common_name,
            serial=cert.serial_number,
            not_after=cert.not_valid_after_utc,
        )

    def create_keys_and_certificate(self) -> tuple[IssuedCertificate, str, str]:
        """A new RSA-2048 key pair and its certificate (like AWS CreateKeysAndCertificate).

        Returns:
            (certificate, public key PEM, private key PEM).
        """
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        issued = self.issue(key.public_key())
        public_pem = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()
        private_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        ).decode()
        return issued, public_pem, private_pem

    def sign_csr(self, csr_pem: str) -> IssuedCertificate:
        """Sign a PEM CSR. The CSR's subject is ignored (the CN must be unique).

        Raises:
            BadCsrError: the CSR does not parse or its signature does not verify.
        """
        try:
            csr = x509.load_pem_x509_csr(csr_pem.encode() if isinstance(csr_pem, str) else csr_pem)
        except (ValueError, TypeError) as exc:
            raise BadCsrError(f"the certificate signing request does not parse: {exc}") from exc
        if not csr.is_signature_valid:
            raise BadCsrError("the certificate signing request's signature is invalid")
        public_key = csr.public_key()
        if not isinstance(public_key, (rsa.RSAPublicKey, ec.EllipticCurvePublicKey)):
            raise BadCsrError("only RSA and EC keys are supported")
        return self.issue(public_key)

    def write_crl(self, revoked_serials: list[int]) -> None:
        """Write the CRL listing ``revoked_serials`` (replaces the previous one atomically)."""
        now = _now()
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.cert.subject)
            .last_update(now - _dt.timedelta(minutes=5))
            .next_update(now + _TEN_YEARS)
        )
        for serial in sorted(set(revoked_serials)):
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now).build()
            )
        crl = builder.sign(self._key, hashes.SHA256())
        tmp = self.crl_file.with_name(CRL_FILE + ".tmp")
        tmp.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
        tmp.replace(self.crl_file)
