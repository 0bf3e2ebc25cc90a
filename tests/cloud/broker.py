"""A real mosquitto with TLS for cloud-layer tests that do not need the whole sandbox.

Generates a CA, a server cert for localhost/127.0.0.1 and client certs with
`cryptography`; listens on a free port; mTLS (CN = username) and password clients.
"""

from __future__ import annotations

import datetime
import os
import socket
import subprocess
import time
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


def _key():
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _cert(subject_cn, key, issuer_cert=None, issuer_key=None, *, ca=False, san=None):
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject_cn)])
    b = (x509.CertificateBuilder().subject_name(name)
         .issuer_name(issuer_cert.subject if issuer_cert else name)
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - datetime.timedelta(minutes=5))
         .not_valid_after(now + datetime.timedelta(days=2))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if san:
        import ipaddress
        b = b.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
    cert = b.sign(issuer_key or key, hashes.SHA256())
    return cert


class Broker:
    """mosquitto on a free port with a private CA. ``start()``/``stop()``/``restart()``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.ca_key = _key()
        self.ca_cert = _cert("fleetdesk-test-ca", self.ca_key, ca=True)
        self.ca_file = self._write("ca.pem", self.ca_cert.public_bytes(serialization.Encoding.PEM))
        skey = _key()
        scert = _cert("localhost", skey, self.ca_cert, self.ca_key, san=True)
        self.server_cert = self._write("server.pem", scert.public_bytes(serialization.Encoding.PEM))
        self.server_key = self._write("server.key", _pem_key(skey))
        self.passwd = self.root / "passwd"
        self.passwd.write_text("")
        self.add_user("app", "app-secret")
        (self.root / "data").mkdir(exist_ok=True)
        conf = [
            "per_listener_settings true",
            f"user {broker_user() or 'root'}",
            "persistence true",
            f"persistence_location {self.root / 'data'}/",
            "autosave_interval 1",
            "max_queued_messages 100000",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            f"listener {self.port} 127.0.0.1",
            f"cafile {self.ca_file}",
            f"certfile {self.server_cert}",
            f"keyfile {self.server_key}",
            "require_certificate false",
            f"password_file {self.passwd}",
            "allow_anonymous false",
        ]
        self.mtls_port = free_port()
        conf += [
            f"listener {self.mtls_port} 127.0.0.1",
            f"cafile {self.ca_file}",
            f"certfile {self.server_cert}",
            f"keyfile {self.server_key}",
            "require_certificate true",
            "use_identity_as_username true",
        ]
        self.conf = self.root / "mosquitto.conf"
        self.conf.write_text("\n".join(conf) + "\n")

    def _write(self, name: str, data: bytes) -> str:
        p = self.root / name
        p.write_bytes(data)
        return str(p)

    def add_user(self, user: str, password: str) -> None:
        subprocess.run(["mosquitto_passwd", "-b", str(self.passwd), user, password], check=True,
                       capture_output=True)

    def client_cert(self, cn: str) -> tuple[str, str]:
        """Issue a client cert; returns (cert_file, key_file)."""
        key = _key()
        cert = _cert(cn, key, self.ca_cert, self.ca_key)
        c = self._write(f"{cn}.crt", cert.public_bytes(serialization.Encoding.PEM))
        k = self._write(f"{cn}.key", _pem_key(key))
        os.chmod(k, 0o600)
        return c, k

    def start(self, timeout: float = 10.0) -> None:
        """Start mosquitto; a port taken between picking and binding it is picked again (5 tries)."""
        for _ in range(5):
            if self._start_once(timeout):
                return
            old = (self.port, self.mtls_port)
            self.port, self.mtls_port = free_port(), free_port()
            text = self.conf.read_text()
            for was, now in zip(old, (self.port, self.mtls_port), strict=True):
                text = text.replace(f"listener {was} ", f"listener {now} ")
            self.conf.write_text(text)
        raise RuntimeError("mosquitto found its ports taken five times in a row")

    def _start_once(self, timeout: float) -> bool:
        log_path = self.root / "mosquitto.log"
        start_at = log_path.stat().st_size if log_path.exists() else 0
        self.log = open(log_path, "ab")
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = log_path.read_bytes()[start_at:].decode(errors="replace")
                if "Address already in use" in tail:
                    return False
                raise RuntimeError(f"mosquitto exited: {tail[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    with socket.create_connection(("127.0.0.1", self.mtls_port), timeout=0.2):
                        return True
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start listening")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        self.log.close()

    def restart(self) -> None:
        self.stop()
        self.start()
