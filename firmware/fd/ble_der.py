# Tiny DER walker for the commit checks: does the private key belong to the
# certificate, and is the certificate within its validity period?
# Runs on MicroPython and CPython. Handles X.509 certificates, PKCS#1 RSA,
# SEC1 EC and PKCS#8 (RSA or EC) private keys, PEM or DER.

import binascii

OID_RSA = b"\x2a\x86\x48\x86\xf7\x0d\x01\x01\x01"
OID_EC = b"\x2a\x86\x48\xce\x3d\x02\x01"


class DerError(Exception):
    pass


def pem_to_der(data):
    """PEM (first block) -> DER; DER passes through unchanged."""
    data = bytes(data)
    if not data.startswith(b"-----"):
        return data
    lines = data.replace(b"\r", b"").split(b"\n")
    body = []
    inside = False
    for line in lines:
        if line.startswith(b"-----BEGIN"):
            inside = True
        elif line.startswith(b"-----END"):
            break
        elif inside and line and b":" not in line:
            body.append(line.strip())
    try:
        return binascii.a2b_base64(b"".join(body))
    except Exception:
        raise DerError("bad PEM")


def tlv(buf, pos, end=None):
    """Read one TLV at pos -> (tag, content_start, content_end)."""
    if end is None:
        end = len(buf)
    if pos + 2 > end:
        raise DerError("truncated DER")
    tag = buf[pos]
    ln = buf[pos + 1]
    pos += 2
    if ln & 0x80:
        n = ln & 0x7F
        if n == 0 or n > 3 or pos + n > end:
            raise DerError("bad DER length")
        ln = int.from_bytes(bytes(buf[pos:pos + n]), "big")
        pos += n
    if pos + ln > end:
        raise DerError("truncated DER")
    return tag, pos, pos + ln


def children(buf, start, end):
    out = []
    pos = start
    while pos < end:
        tag, s, e = tlv(buf, pos, end)
        out.append((tag, s, e))
        pos = e
    return out


def _strip_int(b):
    b = bytes(b)
    while len(b) > 1 and b[0] == 0:
        b = b[1:]
    return b


def _seq(buf, start, end):
    tag, s, e = tlv(buf, start, end)
    if tag != 0x30:
        raise DerError("expected SEQUENCE")
    return children(buf, s, e)


def cert_info(cert):
    """Certificate DER -> dict(public=('rsa', n, e) | ('ec', point), not_before, not_after)."""
    top = _seq(cert, 0, len(cert))
    if top[0][0] != 0x30:
        raise DerError("bad certificate")
    tbs = children(cert, top[0][1], top[0][2])
    i = 1 if tbs[0][0] == 0xA0 else 0
    validity = tbs[i + 3]
    spki = tbs[i + 5]
    times = children(cert, validity[1], validity[2])
    return {
        "public": _spki_public(cert, spki[1], spki[2]),
        "not_before": _time(cert, times[0]),
        "not_after": _time(cert, times[1]),
    }


def _spki_public(buf, s, e):
    algid, bits = children(buf, s, e)[:2]
    oid = children(buf, algid[1], algid[2])[0]
    oid_b = bytes(buf[oid[1]:oid[2]])
    if bits[0] != 0x03:
        raise DerError("bad public key")
    key = bytes(buf[bits[1] + 1:bits[2]])
    if oid_b == OID_RSA:
        n_e = _seq(key, 0, len(key))
        return ("rsa", _strip_int(key[n_e[0][1]:n_e[0][2]]), _strip_int(key[n_e[1][1]:n_e[1][2]]))
    if oid_b == OID_EC:
        return ("ec", key)
    raise DerError("unsupported key algorithm")


def _time(buf, item):
    tag, s, e = item
    t = bytes(buf[s:e]).decode()
    if tag == 0x17:  # UTCTime YYMMDDHHMMSSZ
        yy = int(t[:2])
        t = ("19" if yy >= 50 else "20") + t
    elif tag != 0x18:  # GeneralizedTime YYYYMMDDHHMMSSZ
        raise DerError("bad time")
    return t[:14]


def key_public(key):
    """Private key DER -> ('rsa', n, e) | ('ec', point)."""
    items = _seq(key, 0, len(key))
    if len(items) < 2:
        raise DerError("bad private key")
    if items[1][0] == 0x30:  # PKCS#8: version, algid, OCTET STRING
        algid = children(key, items[1][1], items[1][2])
        oid_b = bytes(key[algid[0][1]:algid[0][2]])
        inner = bytes(key[items[2][1]:items[2][2]])
        if oid_b == OID_RSA:
            return _rsa_priv(inner)
        if oid_b == OID_EC:
            return _ec_priv(inner)
        raise DerError("unsupported key algorithm")
    if items[1][0] == 0x02:  # PKCS#1 RSAPrivateKey
        return _rsa_priv(key)
    if items[1][0] == 0x04:  # SEC1 ECPrivateKey
        return _ec_priv(key)
    raise DerError("unknown private key format")


def _rsa_priv(der):
    it = _seq(der, 0, len(der))
    return ("rsa", _strip_int(der[it[1][1]:it[1][2]]), _strip_int(der[it[2][1]:it[2][2]]))


def _ec_priv(der):
    it = _seq(der, 0, len(der))
    for tag, s, e in it[2:]:
        if tag == 0xA1:
            bits = children(der, s, e)[0]
            return ("ec", bytes(der[bits[1] + 1:bits[2]]))
    raise DerError("EC key without its public key")


def now_stamp(tm):
    """time.gmtime() tuple -> 'YYYYMMDDHHMMSS'."""
    return "%04d%02d%02d%02d%02d%02d" % tuple(tm[:6])


def check_pair(cert, key, now=None):
    """Commit check. Returns None if fine, else a human-readable reason.

    Args:
        cert, key: DER (or PEM) bytes.
        now: 'YYYYMMDDHHMMSS' UTC, or None when the clock is not set (skip the dates).
    """
    try:
        info = cert_info(pem_to_der(cert))
    except (DerError, IndexError, ValueError) as exc:
        return "certificate is not valid DER/PEM (%s)" % exc
    try:
        pub = key_public(pem_to_der(key))
    except (DerError, IndexError, ValueError) as exc:
        return "private key is not valid DER/PEM (%s)" % exc
    if pub != info["public"]:
        return "certificate and private key do not match"
    if now is not None:
        if now > info["not_after"]:
            return "certificate expired (not after %s UTC)" % info["not_after"]
        if now < info["not_before"]:
            return "certificate not yet valid (not before %s UTC)" % info["not_before"]
    return None
