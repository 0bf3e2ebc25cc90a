# What must survive a reboot (/settings.json) and the per-device config (/config.json).
#
# /config.json (written at flash time or by BLE config mode):
#   {"thing_name": "esp32-a1b2c3", "endpoint": "iot.example.com", "port": 8883,
#    "region": "us-east-1",
#    "ca": "/certs/ca.der", "cert": "/certs/cert.der", "key": "/certs/key.der",   (defaults)
#    "claim": {"cert": "/certs/claim-cert.der", "key": "/certs/claim-key.der",
#              "template": "FleetTemplate"},                                      (optional)
#    "pop": "...", "wifi": {"ssid": "...", "password": "..."}, "product": "..."}  (optional)
# Cert/key files are DER (PEM is accepted too and converted at runtime).
#
# /settings.json (runtime): {"refresh": ms, "reboot": counter, "firmware_version": "x.y.z",
#   "on": bool, "boots": n, "pending_job": {...} | null, "ota_failed": [...],
#   "backoff_max_ms": cap of the reconnect backoff (optional, default 60000)}
from fd import compat
from fd.version import VERSION

REFRESH_MIN = 1000
REFRESH_MAX = 3600000
DEFAULT_REFRESH = 10000


class InitError(Exception):
    pass


class Settings:
    """/settings.json: loaded with defaults, saved atomically on every change.

    Every value is checked and bounded on load and on update (clean()): a value out of its
    bounds falls back to its default (or is dropped), so settings.json stays small whatever
    the cloud sent (issue 16: firmware_url/ota_failed had grown it to 11.5 KB)."""

    def __init__(self, path):
        self.path = path
        self.data = dict(DEFAULTS)
        self.data["ota_failed"] = []
        self.problem = None
        if compat.exists(path):
            try:
                stored = compat.read_json(path)
                if not isinstance(stored, dict):
                    raise ValueError("not an object")
            except (OSError, ValueError) as exc:
                self.problem = "settings.json unreadable (%s); defaults used" % exc
                stored = {}
            dropped = []
            for k in stored:
                ok, v = clean(k, stored[k])
                if ok:
                    self.data[k] = v
                else:
                    dropped.append(k)
            if dropped:
                self.problem = "settings.json: %s out of bounds; defaults used" % ", ".join(sorted(dropped))

    def __getitem__(self, k):
        return self.data.get(k)

    def get(self, k, default=None):
        return self.data.get(k, default)

    def update(self, **kw):
        """Set values; one that fails clean() raises ValueError (nothing is saved then)."""
        for k in kw:
            if not clean(k, kw[k])[0]:
                raise ValueError("settings: %s=%s is out of bounds" % (k, show(kw[k])))
        changed = False
        for k in kw:
            if self.data.get(k) != kw[k]:
                self.data[k] = kw[k]
                changed = True
        if changed:
            self.save()

    def save(self):
        compat.write_json(self.path, self.data)


DEFAULTS = {"refresh": DEFAULT_REFRESH, "reboot": 0, "firmware_version": VERSION,
            "on": False, "boots": 0, "pending_job": None, "ota_failed": []}
URL_MAX = 1024  # presigned S3 URLs run to ~1 KB; bounded so settings.json stays small
VERSION_MAX = 32
INT_MAX = 2 ** 31 - 1


def _int_in(v, lo, hi):
    return not isinstance(v, bool) and isinstance(v, int) and lo <= v <= hi


def _short_str(v, n):
    return isinstance(v, str) and 0 < len(v) <= n


def clean(k, v):
    """(ok, value): is `v` a valid, bounded value for settings key `k`."""
    if k == "refresh":
        return validate_refresh(v)[1] is None, v
    if k in ("reboot", "boots"):
        return _int_in(v, 0, INT_MAX), v
    if k in ("on", "config_mode"):
        return isinstance(v, bool), v
    if k == "firmware_version":
        return validate_ota(k, v) is None, v
    if k in ("firmware_url", "firmware_sha256"):
        return v is None or validate_ota(k, v) is None, v
    if k == "backoff_max_ms":
        return _int_in(v, 1000, 3600000), v
    if k == "ota_failed":
        return isinstance(v, list) and len(v) <= 5 and all(_short_str(x, 64) for x in v), v
    if k == "pending_job":
        if v is None:
            return True, v
        ok = (isinstance(v, dict) and len(v) <= 4 and _short_str(v.get("jobId"), 64)
              and v.get("op") in ("reboot", "ota") and (v.get("version") is None or _short_str(v.get("version"), VERSION_MAX)))
        return ok, v
    return False, v  # unknown keys are not kept


def validate_ota(k, v):
    """None, or why `v` is not a valid firmware_version / firmware_url / firmware_sha256."""
    if k == "firmware_version":
        if not _short_str(v, VERSION_MAX) or not all(c.isalpha() or c.isdigit() or c in "._+-" for c in v):
            return "firmware_version must be 1..%d characters of A-Z a-z 0-9 . _ + -, got %s" % (VERSION_MAX, show(v))
        return None
    if k == "firmware_url":
        if not _short_str(v, URL_MAX) or not v.startswith("https://") or len(v) < 9 or " " in v:
            return "firmware_url must be an https:// URL of at most %d characters, got %s" % (URL_MAX, show(v))
        return None
    if k == "firmware_sha256":
        if not isinstance(v, str) or len(v) != 64 or any(c not in "0123456789abcdefABCDEF" for c in v):
            return "firmware_sha256 must be 64 hex characters, got %s" % show(v)
        return None
    return "unknown key %r" % (k,)


def validate_refresh(v):
    """(value, error): telemetry period in ms, an integer within REFRESH_MIN..REFRESH_MAX."""
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v != int(v):
        return None, "refresh must be an integer number of milliseconds, got %s" % _show(v)
    v = int(v)
    if v < REFRESH_MIN or v > REFRESH_MAX:
        return None, "refresh %d out of range %d..%d ms" % (v, REFRESH_MIN, REFRESH_MAX)
    return v, None


def validate_on(v):
    if isinstance(v, bool):
        return v, None
    if v in (0, 1):
        return bool(v), None
    return None, "on must be true or false, got %s" % _show(v)


def show(v):
    """A value as JSON for an error message, at most 40 characters."""
    return _show(v)


def _show(v):
    try:
        import json

        s = json.dumps(v)
    except Exception:
        s = repr(v)
    return s if len(s) <= 40 else s[:37] + "..."


class Config:
    """/config.json plus the certificate files it names (DER bytes)."""

    def __init__(self, dev):
        self.dev = dev
        self.path = dev.path("/config.json")
        self.data = {}
        if not compat.exists(self.path):
            return
        try:
            self.data = compat.read_json(self.path)
        except (OSError, ValueError) as exc:
            raise InitError("config.json is not valid JSON (%s)" % exc)
        if not isinstance(self.data, dict):
            raise InitError("config.json must hold a JSON object")
        port = self.data.get("port", 8883)
        if not isinstance(port, int) or not 0 < port < 65536:
            raise InitError("config.json: port must be 1..65535, got %r" % (port,))

    def get(self, k, default=None):
        return self.data.get(k, default)

    @property
    def thing_name(self):
        return self.data.get("thing_name")

    @property
    def endpoint(self):
        return self.data.get("endpoint")

    @property
    def port(self):
        return self.data.get("port", 8883)

    def _file(self, key, default):
        return self.dev.path(self.data.get(key) or default)

    @property
    def provisioned(self):
        """Thing name, endpoint and thing cert+key are all present."""
        return bool(self.thing_name and self.endpoint and compat.exists(self._file("cert", "/certs/cert.der"))
                    and compat.exists(self._file("key", "/certs/key.der")))

    @property
    def claim(self):
        c = self.data.get("claim")
        if isinstance(c, dict) and self.endpoint and c.get("template"):
            if compat.exists(self.dev.path(c.get("cert") or "/certs/claim-cert.der")):
                return c
        return None

    def read_cert(self, path):
        data = compat.read_bytes(self.dev.path(path))
        if data.startswith(b"-----BEGIN"):
            return compat.pem_to_der(data)
        return data

    def ca_der(self):
        try:
            return self.read_cert(self.data.get("ca") or "/certs/ca.der")
        except OSError:
            raise InitError("no CA certificate at %s" % (self.data.get("ca") or "/certs/ca.der"))

    def thing_creds(self):
        return (self.read_cert(self.data.get("cert") or "/certs/cert.der"),
                self.read_cert(self.data.get("key") or "/certs/key.der"))

    def claim_creds(self):
        c = self.claim
        return (self.read_cert(c.get("cert") or "/certs/claim-cert.der"),
                self.read_cert(c.get("key") or "/certs/claim-key.der"))

    def save(self, data):
        self.data = data
        compat.write_json(self.path, data)
