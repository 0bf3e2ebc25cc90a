# TLS for Normal mode (MQTT, OTA, claim provisioning): a client context that verifies the
# server with the device CA, optionally presenting the thing certificate (mTLS). A module of
# its own so Config mode (BLE only, never TLS in the same boot) does not load it, and Normal
# mode drops it once its context is built (fd.compat.unload); streams open with
# fd.mqtt.open_tls.
import os

from fd.compat import IS_MPY, der_to_pem


def tls_context(ca_der, cert_der=None, key_der=None):
    """A client TLS context that verifies the server with `ca_der` (DER bytes).

    With cert_der/key_der (DER bytes) it also presents a client certificate (mTLS).
    """
    import ssl

    if IS_MPY:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cadata=ca_der)
        if cert_der is not None:
            ctx.load_cert_chain(cert_der, key_der)
        return ctx
    ctx = ssl.create_default_context(cadata=ca_der)  # pyright: ignore[reportAttributeAccessIssue] - CPython path, after the MicroPython return
    if cert_der is not None:
        _cpython_load_chain(ctx, cert_der, key_der)
    return ctx


def _cpython_load_chain(ctx, cert_der, key_der):
    # CPython's ssl module only loads a client cert+key from files: write a private temp file
    # (0600, deleted at once). The key DER may be PKCS#8, SEC1 (EC) or PKCS#1 (RSA).
    import ssl
    import tempfile

    last = None
    for label in ("PRIVATE KEY", "EC PRIVATE KEY", "RSA PRIVATE KEY"):
        fd, name = tempfile.mkstemp(prefix="fd-", suffix=".pem")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(der_to_pem(cert_der, "CERTIFICATE"))
                f.write(der_to_pem(key_der, label))
            ctx.load_cert_chain(name)
            return
        except ssl.SSLError as exc:
            last = exc
        finally:
            os.unlink(name)
    raise ValueError("the device key does not match its certificate or is unreadable (%s)" % last)
