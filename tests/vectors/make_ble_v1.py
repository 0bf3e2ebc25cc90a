"""Regenerate tests/vectors/ble_v1.json (shared by host and device BLE tests).

    .venv/bin/python tests/vectors/make_ble_v1.py
The vectors are committed; regenerate only when the protocol version changes.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from fleetdesk.ble import session as p

OUT = Path(__file__).with_name("ble_v1.json")
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def _cert(key, days_from: int, days_to: int) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "vector")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(7).not_valid_before(T0 + dt.timedelta(days=days_from))
            .not_valid_after(T0 + dt.timedelta(days=days_to)).sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.DER)


def _key(key, fmt) -> bytes:
    return key.private_bytes(serialization.Encoding.DER, fmt, serialization.NoEncryption())


def main() -> None:
    pop, hn, dn = b"vector-pop-1234", bytes(range(16)), bytes(range(100, 116))
    keys = p.SessionKeys.derive(pop, hn, dn)
    host = p.SecureChannel(keys, p.DIR_HOST, p.DIR_DEVICE)
    dev = p.SecureChannel(keys, p.DIR_DEVICE, p.DIR_HOST)
    frames = []
    for direction, chan_obj, ch, pt in (("H", host, p.CH_CTRL, b'{"v":1,"op":"status"}'),
                                         ("D", dev, p.CH_CTRL, b'{"ok":true,"v":1}'),
                                         ("H", host, p.CH_WIFI, b""),
                                         ("H", host, p.CH_BULK, p.pack_chunk(1, 128, b"x" * 40)),
                                         ("D", dev, p.CH_CLOUD, bytes(range(256)))):
        frames.append({"dir": direction, "chan": ch, "ctr": chan_obj.tx_ctr + 1, "plaintext": pt.hex(),
                       "frame": chan_obj.seal(ch, pt).hex()})
    msg = bytes(range(200)) + b"end"
    rsa_k = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_k = ec.generate_private_key(ec.SECP256R1())
    other = ec.generate_private_key(ec.SECP256R1())
    pkcs8, trad = serialization.PrivateFormat.PKCS8, serialization.PrivateFormat.TraditionalOpenSSL
    rsa_c, ec_c = _cert(rsa_k, -10, 365), _cert(ec_k, -10, 365)
    now = "20260301120000"
    pairs = [
        {"name": "rsa-pkcs1", "cert": rsa_c.hex(), "key": _key(rsa_k, trad).hex(), "now": now, "result": None},
        {"name": "rsa-pkcs8", "cert": rsa_c.hex(), "key": _key(rsa_k, pkcs8).hex(), "now": now, "result": None},
        {"name": "ec-sec1", "cert": ec_c.hex(), "key": _key(ec_k, trad).hex(), "now": now, "result": None},
        {"name": "ec-pkcs8", "cert": ec_c.hex(), "key": _key(ec_k, pkcs8).hex(), "now": now, "result": None},
        {"name": "mismatch", "cert": ec_c.hex(), "key": _key(other, trad).hex(), "now": now, "result": "do not match"},
        {"name": "rsa-vs-ec", "cert": rsa_c.hex(), "key": _key(ec_k, trad).hex(), "now": now, "result": "do not match"},
        {"name": "expired", "cert": _cert(ec_k, -400, -30).hex(), "key": _key(ec_k, trad).hex(), "now": now, "result": "expired"},
        {"name": "not-yet-valid", "cert": _cert(ec_k, 200, 900).hex(), "key": _key(ec_k, trad).hex(), "now": now, "result": "not yet valid"},
        {"name": "garbage-cert", "cert": "3003020101", "key": _key(ec_k, trad).hex(), "now": now, "result": "certificate is not valid"},
    ]
    data = {
        "version": p.VERSION,
        "pop": pop.hex(), "host_nonce": hn.hex(), "device_nonce": dn.hex(),
        "keys": {k: getattr(keys, k).hex() for k in ("session", "enc", "mac", "iv", "host_proof", "device_proof")},
        "frames": frames,
        "fragments": [{"msg": msg.hex(), "size": s, "fragments": [f.hex() for f in p.fragment(msg, s)]} for s in (20, 64, 509)]
        + [{"msg": "", "size": 20, "fragments": [f.hex() for f in p.fragment(b"", 20)]}],
        "crc32": [{"data": d.hex(), "crc": p.crc32(d)} for d in (b"", b"abc", bytes(range(256)))],
        "chunk_size": {str(m): p.chunk_size(m) for m in (23, 185, 247, 512, 517)},
        "uuid_le": {p.SERVICE_UUID: p.uuid_le(p.SERVICE_UUID).hex()},
        "pairs": pairs,
    }
    OUT.write_text(json.dumps(data, indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
