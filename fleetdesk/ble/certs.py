"""Certificate/key material for BLE provisioning: DER conversion and the host-side pre-check.

The device repeats the same checks at commit (firmware/fd/ble_der.py); checking on the
host first gives the technician the error before any byte crosses the radio.
"""

from __future__ import annotations

import datetime as _dt

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from fleetdesk.errors import BleError


def cert_der(data: bytes) -> bytes:
    """PEM or DER certificate -> DER. Raises BleError for anything else."""
    try:
        cert = x509.load_pem_x509_certificate(data) if data.lstrip().startswith(b"-----") else x509.load_der_x509_certificate(data)
    except ValueError as exc:
        raise BleError("the certificate is neither PEM nor DER X.509", "Pick the device certificate file (.pem.crt).") from exc
    return cert.public_bytes(serialization.Encoding.DER)


def key_der(data: bytes) -> bytes:
    """PEM or DER private key (PKCS#1/SEC1/PKCS#8, unencrypted) -> DER in its traditional form."""
    try:
        if data.lstrip().startswith(b"-----"):
            key = serialization.load_pem_private_key(data, password=None)
        else:
            key = serialization.load_der_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise BleError("the private key is unreadable (or encrypted)", "Pick the unencrypted .pem.key file.") from exc
    return key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption())


def check_pair(cert: bytes, key: bytes, now: _dt.datetime | None = None) -> str | None:
    """None if the key belongs to the cert and the cert is valid now, else the reason."""
    c = x509.load_der_x509_certificate(cert_der(cert))
    k = serialization.load_der_private_key(key_der(key), password=None)
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if c.public_key().public_bytes(*spki) != k.public_key().public_bytes(*spki):
        return "certificate and private key do not match"
    now = now or _dt.datetime.now(_dt.timezone.utc)
    if now > c.not_valid_after_utc:
        return f"certificate expired (not after {c.not_valid_after_utc:%Y-%m-%d %H:%M:%S} UTC)"
    if now < c.not_valid_before_utc:
        return f"certificate not yet valid (not before {c.not_valid_before_utc:%Y-%m-%d %H:%M:%S} UTC)"
    return None
