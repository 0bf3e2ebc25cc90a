# Device side of the BLE provisioning protocol v1: one ConfigSession per Config-mode run.
# handle(chan, message) -> reply message (bytes) or None. Never raises for bad input:
# every problem becomes an error reply. Staged Wi-Fi/cloud/files survive a dropped link
# (a new session after a fresh hello+auth resumes them); nothing is written to the
# device until an explicit commit passes every check.

import hashlib
import json
import os
import time

try:
    import socket
except ImportError:  # pragma: no cover
    socket = None

from fd import ble_der
from fd.ble_proto import (
    CH_BULK, CH_CLOUD, CH_CTRL, CH_WIFI, DIR_DEVICE, DIR_HOST, FILES, MAX_FILE, T_PLAIN,
    T_SECURE, VERSION, ProtoError, SecureChannel, derive, consteq, crc32, hexs, plain,
    unhex, unpack_chunk,
)

CAPS = ["wifi", "wifi-scan", "cloud", "files", "resume"]
MAX_POP_FAILURES = 5  # then auth is refused for LOCKOUT_MS (online guessing brake)
LOCKOUT_MS = 30000


def _ticks():
    try:
        return time.ticks_ms()
    except AttributeError:  # CPython
        return int(time.monotonic() * 1000)  # pyright: ignore[reportAttributeAccessIssue] - CPython path (except AttributeError)


def _since(t0):
    try:
        return time.ticks_diff(time.ticks_ms(), t0)
    except AttributeError:
        return _ticks() - t0
CERT_PATHS = {"ca": "/certs/ca.der", "cert": "/certs/cert.der", "key": "/certs/key.der"}


def _clock_now():
    tm = time.gmtime()
    if tm[0] < 2024:  # clock not set (no NTP yet): skip date checks
        return None
    return ble_der.now_stamp(tm)


def _resolve(host, port):
    if socket is None:
        return "no resolver"
    try:
        if not socket.getaddrinfo(host, port):
            return "no address"
    except Exception as exc:  # OSError on MicroPython and CPython
        return str(exc) or "lookup failed"
    return None


def _valid_thing(name):
    if not isinstance(name, str) or not 1 <= len(name) <= 128:
        return False
    for ch in name:
        if not (ch.isalpha() or ch.isdigit() or ch in ":_-"):
            return False
    return True


class ConfigSession:
    def __init__(self, dev, pop, name, now=_clock_now, resolve=_resolve, rand=os.urandom):
        self.dev = dev
        self.pop = pop
        self.name = name
        self.now = now
        self.resolve = resolve
        self.rand = rand
        self.wifi = None  # {"ssid", "password"}
        self.wifi_result = None  # (ok, reason)
        self.cloud = None
        self.files = {}
        self.committed = None
        self.failures = 0
        self.last_failure = 0
        self.reset_link()

    # ---- link/session -------------------------------------------------------------
    def reset_link(self):
        self.keys = None
        self.chan = None

    def provisioned(self):
        try:
            cfg = self.dev.load_config() or {}
        except Exception:
            return False
        return bool(cfg.get("thing_name") and cfg.get("endpoint"))

    def status_plain(self):
        return {"v": VERSION, "op": "status", "state": "config", "name": self.name,
                "provisioned": self.provisioned(), "caps": CAPS}

    # ---- entry point ----------------------------------------------------------------
    def handle(self, ch, msg):
        if not msg:
            return self._err(None, "frame", "empty message")
        kind = msg[0]
        if kind == T_PLAIN:
            try:
                req = json.loads(bytes(msg[1:]))
                if not isinstance(req, dict):
                    raise ValueError("not an object")
            except Exception:
                return self._err(None, "frame", "malformed JSON")
            return self._plain(ch, req)
        if kind == T_SECURE:
            if self.chan is None:
                return self._err(None, "session", "no session: send hello and auth first")
            try:
                pt = self.chan.open(ch, msg)
            except ProtoError as exc:
                return self._err(None, exc.code, exc.msg)
            try:
                reply = self._secure(ch, pt)
            except ProtoError as exc:
                reply = {"ok": False, "code": exc.code, "error": exc.msg}
            reply["v"] = VERSION  # pyright: ignore[reportArgumentType] - reply's type is inferred from its first literal
            return self.chan.seal(ch, json.dumps(reply).encode())
        return self._err(None, "frame", "unknown message type")

    def _err(self, req, code, text):
        out = {"v": VERSION, "ok": False, "code": code, "error": text}
        if isinstance(req, dict) and "id" in req:
            out["id"] = req["id"]
        return plain(out)

    def _plain(self, ch, req):
        if req.get("v") != VERSION:
            return self._err(req, "version", "unsupported protocol version %r (device speaks %d)" % (req.get("v"), VERSION))
        op = req.get("op")
        if ch != CH_CTRL:
            return self._err(req, "session", "only hello/auth/status are allowed without a session")
        if op == "status":
            out = self.status_plain()
            out["ok"] = True
            return plain(out)
        if op == "hello":
            try:
                hn = unhex(req["nonce"])
            except Exception:
                return self._err(req, "bad_request", "hello needs a hex nonce")
            if not 16 <= len(hn) <= 32:
                return self._err(req, "bad_request", "nonce must be 16..32 bytes")
            dn = self.rand(16)
            self.reset_link()
            self.keys = derive(self.pop, hn, dn)
            out = self.status_plain()
            out.update({"op": "hello", "ok": True, "nonce": hexs(dn)})
            return plain(out)
        if op == "auth":
            if self.keys is None:
                return self._err(req, "session", "send hello first")
            try:
                proof = unhex(req["proof"])
            except Exception:
                return self._err(req, "bad_request", "auth needs a hex proof")
            if self.failures >= MAX_POP_FAILURES and _since(self.last_failure) < LOCKOUT_MS:
                self.reset_link()
                return self._err(req, "locked", "too many wrong proof-of-possession attempts: wait %d s"
                                 % ((LOCKOUT_MS - _since(self.last_failure)) // 1000 + 1))
            if not consteq(proof, self.keys["host_proof"]):
                self.failures += 1
                self.last_failure = _ticks()
                self.reset_link()  # a new hello (new nonces) is needed; staged state untouched
                return self._err(req, "pop", "wrong proof-of-possession")
            self.failures = 0
            self.chan = SecureChannel(self.keys, DIR_DEVICE, DIR_HOST)
            return plain({"v": VERSION, "op": "auth", "ok": True,
                          "proof": hexs(self.keys["device_proof"])})
        return self._err(req, "bad_request", "unknown or session-only op %r" % (op,))

    # ---- secure operations -----------------------------------------------------------
    def _secure(self, ch, pt):
        if ch == CH_BULK and pt and pt[0] == 0x43:
            return self._chunk(pt)
        try:
            req = json.loads(pt)
            if not isinstance(req, dict):
                raise ValueError
        except Exception:
            raise ProtoError("frame", "malformed JSON")
        if req.get("v") != VERSION:
            raise ProtoError("version", "unsupported protocol version")
        op = req.get("op")
        if ch == CH_WIFI:
            out = self._wifi(op, req)
        elif ch == CH_CLOUD:
            out = self._cloud(op, req)
        else:
            out = self._ctrl(op, req)
        if "id" in req:
            out["id"] = req["id"]
        return out

    def _wifi(self, op, req):
        if op == "scan":
            nets = []
            for ssid, rssi, auth in self.dev.wifi_scan():
                nets.append({"ssid": ssid, "rssi": rssi, "auth": auth})
            return {"ok": True, "networks": nets}
        if op == "set":
            ssid = req.get("ssid")
            pw = req.get("password", "")
            if not isinstance(ssid, str) or not 1 <= len(ssid.encode()) <= 32:
                raise ProtoError("bad_request", "SSID must be 1..32 bytes")
            if not isinstance(pw, str) or len(pw.encode()) > 64:
                raise ProtoError("bad_request", "Wi-Fi password must be at most 64 bytes")
            ok, reason = self.dev.wifi_connect(ssid, pw)
            self.wifi = {"ssid": ssid, "password": pw}
            self.wifi_result = (bool(ok), reason)
            return {"ok": True, "connected": bool(ok), "reason": reason}
        raise ProtoError("bad_request", "unknown Wi-Fi op")

    def _cloud(self, op, req):
        if op != "set":
            raise ProtoError("bad_request", "unknown cloud op")
        ep = req.get("endpoint")
        port = req.get("port", 8883)
        thing = req.get("thing_name")
        if not isinstance(ep, str) or not 1 <= len(ep) <= 253:
            raise ProtoError("bad_request", "endpoint must be a host name")
        if not isinstance(port, int) or not 1 <= port <= 65535:
            raise ProtoError("bad_request", "port must be 1..65535")
        if not _valid_thing(thing):
            raise ProtoError("bad_request", "thing name must be 1..128 of [A-Za-z0-9:_-]")
        self.cloud = {"endpoint": ep, "port": port, "thing_name": thing,
                      "region": req.get("region") if isinstance(req.get("region"), str) else None}
        return {"ok": True}

    def _file(self, req):
        name = req.get("file")
        if name not in FILES:
            raise ProtoError("file", "unknown file %r" % (name,))
        if name == "csr":
            raise ProtoError("unsupported", "this device cannot make its own key (no CSR capability)")
        return name

    def _ctrl(self, op, req):
        if op == "status":
            files = {}
            for name, f in self.files.items():
                files[name] = {"size": f["size"], "next": len(f["buf"]), "done": f["done"]}
            wifi = None
            if self.wifi:
                wifi = {"ssid": self.wifi["ssid"], "connected": self.wifi_result[0],
                        "reason": self.wifi_result[1]}
            return {"ok": True, "state": "config", "wifi": wifi, "cloud": self.cloud, "files": files,
                    "provisioned": self.provisioned()}
        if op == "file_begin":
            name = self._file(req)
            size = req.get("size")
            sha = req.get("sha256")
            if not isinstance(size, int) or not 1 <= size <= MAX_FILE:
                raise ProtoError("size", "file size must be 1..%d bytes" % MAX_FILE)
            if not isinstance(sha, str) or len(sha) != 64:
                raise ProtoError("bad_request", "sha256 must be 64 hex characters")
            f = self.files.get(name)
            if f is None or f["size"] != size or f["sha256"] != sha:
                f = {"size": size, "sha256": sha, "buf": bytearray(), "done": False}
                self.files[name] = f
            return {"ok": True, "file": name, "next": len(f["buf"]), "done": f["done"]}
        if op == "file_end":
            name = self._file(req)
            f = self.files.get(name)
            if f is None:
                raise ProtoError("file", "file %s was not begun" % name)
            if len(f["buf"]) != f["size"] or hexs(hashlib.sha256(bytes(f["buf"])).digest()) != f["sha256"]:
                f["buf"] = bytearray()
                f["done"] = False
                return {"ok": False, "code": "sha256", "file": name, "next": 0,
                        "error": "SHA-256 of %s does not match: send it again" % name}
            f["done"] = True
            return {"ok": True, "file": name, "next": f["size"], "done": True}
        if op == "commit":
            return self._commit()
        if op == "leave":
            # back to Normal mode without changes (a provisioned board sent to Config mode)
            if not self.provisioned():
                raise ProtoError("not_provisioned", "this board has no cloud config yet: provision and commit")
            self.committed = self.dev.load_config() or {}
            return {"ok": True, "left": True}
        if op == "reset":
            self.wifi = self.wifi_result = self.cloud = None
            self.files = {}
            return {"ok": True}
        raise ProtoError("bad_request", "unknown control op %r" % (op,))

    def _chunk(self, pt):
        idx, offset, crc, data = unpack_chunk(pt)
        name = FILES[idx]
        f = self.files.get(name)
        if f is None:
            raise ProtoError("file", "file %s was not begun" % name)
        nxt = len(f["buf"])
        if offset != nxt:
            return {"ok": False, "code": "offset", "file": name, "next": nxt,
                    "error": "expected offset %d" % nxt}
        if crc32(data) != crc:
            return {"ok": False, "code": "crc", "file": name, "next": nxt, "error": "chunk CRC-32 mismatch"}
        if nxt + len(data) > f["size"]:
            return {"ok": False, "code": "size", "file": name, "next": nxt, "error": "chunk past the end of the file"}
        f["buf"].extend(data)
        return {"ok": True, "file": name, "next": len(f["buf"])}

    def _commit(self):
        errors = []
        if not self.wifi:
            errors.append({"check": "wifi", "error": "Wi-Fi not set"})
        elif not self.wifi_result[0]:
            errors.append({"check": "wifi", "error": "Wi-Fi connection failed: %s" % self.wifi_result[1]})
        if not self.cloud:
            errors.append({"check": "cloud", "error": "cloud endpoint and thing name not set"})
        ders = {}
        for name in ("ca", "cert", "key"):
            f = self.files.get(name)
            if f is None or not f["done"]:
                errors.append({"check": name, "error": "%s not received" % name})
            else:
                try:
                    ders[name] = ble_der.pem_to_der(f["buf"])
                except ble_der.DerError as exc:
                    errors.append({"check": name, "error": str(exc)})
        if "cert" in ders and "key" in ders:
            reason = ble_der.check_pair(ders["cert"], ders["key"], self.now())
            if reason:
                errors.append({"check": "cert_key", "error": reason})
        if "ca" in ders:
            try:
                ble_der.cert_info(ders["ca"])
            except Exception:
                errors.append({"check": "ca", "error": "CA certificate is not a valid X.509 certificate"})
        if self.cloud:
            why = self.resolve(self.cloud["endpoint"], self.cloud["port"])
            if why:
                errors.append({"check": "endpoint", "error": "endpoint %s does not resolve (%s)" % (self.cloud["endpoint"], why)})
        if errors:
            return {"ok": False, "code": "commit", "errors": errors,
                    "error": "commit refused: " + "; ".join(e["error"] for e in errors)}
        for name, path in CERT_PATHS.items():
            self.dev.write_file(path, ders[name])
        cfg = self.dev.load_config() or {}
        cfg.update({"thing_name": self.cloud["thing_name"], "endpoint": self.cloud["endpoint"],
                    "port": self.cloud["port"], "wifi": dict(self.wifi)})  # pyright: ignore[reportCallIssue, reportArgumentType] - wifi is set before the cloud step
        if self.cloud.get("region"):
            cfg["region"] = self.cloud["region"]
        for name, path in CERT_PATHS.items():
            cfg[name] = path
        self.dev.save_config(cfg)
        self.committed = cfg
        return {"ok": True, "committed": True}
