"""A plain mosquitto with an mTLS listener and certs made with `cryptography`.

Used by firmware tests that exercise the MQTT client and TLS path without the full sandbox.
"""

from __future__ import annotations

import datetime
import os
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from fleetdesk.sandbox.broker import broker_user, find_mosquitto

MOSQUITTO = find_mosquitto()[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(subject, issuer, pub, signer, *, ca=False, san=None):
    now = datetime.datetime.now(datetime.timezone.utc)
    b = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(pub)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if san:
        import ipaddress

        b = b.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    return b.sign(signer, hashes.SHA256())


@dataclass
class Creds:
    cert_pem: bytes
    key_pem: bytes

    @property
    def cert_der(self) -> bytes:
        return x509.load_pem_x509_certificate(self.cert_pem).public_bytes(serialization.Encoding.DER)

    @property
    def key_der(self) -> bytes:
        key = serialization.load_pem_private_key(self.key_pem, None)
        return key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )


class TestCA:
    """A throw-away CA that issues a server cert and client certs."""

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.cert = _cert(_name("Test CA"), _name("Test CA"), self.key.public_key(), self.key, ca=True)

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    def issue(self, cn: str, *, server: bool = False) -> Creds:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _cert(_name(cn), self.cert.subject, key.public_key(), self.key, san=server)
        return Creds(
            cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        )


@dataclass
class Broker:
    host: str
    port: int
    ca: TestCA
    ca_file: Path
    proc: subprocess.Popen
    dir: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def start_broker(tmp: Path, ca: TestCA | None = None, port: int | None = None) -> Broker:
    """Start mosquitto with an mTLS listener on a free port; returns when it accepts TCP."""
    ca = ca or TestCA()
    tmp.mkdir(parents=True, exist_ok=True)
    srv = ca.issue("localhost", server=True)
    (tmp / "ca.pem").write_bytes(ca.pem)
    (tmp / "server.pem").write_bytes(srv.cert_pem)
    (tmp / "server.key").write_bytes(srv.key_pem)
    port = port or free_port()
    user = broker_user() or "root"
    conf = tmp / "mosquitto.conf"
    conf.write_text(
        f"user {user}\n"
        "per_listener_settings false\nallow_anonymous true\npersistence false\n"
        "max_queued_messages 100000\nmax_inflight_messages 0\n"
        f"listener {port} 127.0.0.1\n"
        f"cafile {tmp / 'ca.pem'}\ncertfile {tmp / 'server.pem'}\nkeyfile {tmp / 'server.key'}\n"
        "require_certificate true\nuse_identity_as_username true\n"
    )
    proc = subprocess.Popen(
        [MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=open(tmp / "broker.log", "wb")
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            break
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError((tmp / "broker.log").read_text())
            time.sleep(0.05)
    else:
        proc.kill()
        raise RuntimeError("mosquitto did not start")
    return Broker("localhost", port, ca, tmp / "ca.pem", proc, tmp)
