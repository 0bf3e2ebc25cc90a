"""Test peripheral: the DEVICE side of ESP-IDF unified provisioning (protocomm over BLE),
using Espressif's own generated protobuf modules and esp_prov's SRP-6a group and hash
(tests/ble/espressif_files.py, vendored from esp-idf), never the product's, registered as a
BlueZ GATT application (dbus-fast) on a BlueZoo adapter. Hand-written: ESP-IDF's device side is
C firmware; this emulates what its protocomm_ble answers.

Endpoints (characteristic = service UUID with 0xFFxx in bytes 2-3, named by a 0x2901
descriptor): prov-ctrl FF4F, prov-scan FF50, prov-session FF51, prov-config FF52,
proto-ver FF53, custom-data FF54 (echoes the request upper-cased).
"""

import hashlib
import json
import os
import struct

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from dbus_fast import BusType, PropertyAccess, Variant
from dbus_fast.aio import MessageBus
from dbus_fast.service import ServiceInterface, dbus_property, method
from espressif_files import pb, srp_params

from fleetdesk.virtual.bluez_gatt import interfaces, register

# wifi_provisioning's default service (components/wifi_provisioning/src/scheme_ble.c, bytes reversed);
# esp_prov connects to whatever service UUID the board advertises.
ESP_SERVICE_UUID = "1775244d-6b43-439b-877c-060f2d9bed07"

ENDPOINTS = {"prov-ctrl": 0xFF4F, "prov-scan": 0xFF50, "prov-session": 0xFF51, "prov-config": 0xFF52,
             "proto-ver": 0xFF53, "custom-data": 0xFF54}
APP = "/org/fleetdesk/espidf"


def char_uuid(code: int) -> str:
    return ESP_SERVICE_UUID[:4] + f"{code:04x}" + ESP_SERVICE_UUID[8:]


class Protocomm:
    """Device-side state machine (one session at a time, like protocomm_ble)."""

    def __init__(self, security: int, pop: str, username: str, networks: dict[str, str]) -> None:
        self.security, self.pop, self.username, self.networks = security, pop, username, networks
        self.ctr = None
        self.gcm = None
        self.nonce = bytearray()
        self.authed = security == 0
        self.staged: tuple[bytes, bytes] | None = None
        self.state = (2, None)  # (sta_state, fail_reason)
        if security == 2:
            import srp

            self.salt, self.vkey = srp.create_salted_verification_key(username, pop, salt_len=16, **srp_params())

    # -- crypto
    def _n(self) -> bytes:
        n = bytes(self.nonce)
        self.nonce[8:] = struct.pack(">I", struct.unpack(">I", self.nonce[8:])[0] + 1)
        return n

    def dec(self, data: bytes) -> bytes:
        if self.security == 1:
            return self.ctr.update(data)
        if self.security == 2:
            return self.gcm.decrypt(self._n(), data, None)
        return data

    def enc(self, data: bytes) -> bytes:
        if self.security == 1:
            return self.ctr.update(data)
        if self.security == 2:
            return self.gcm.encrypt(self._n(), data, None)
        return data

    # -- endpoints
    def handle(self, name: str, data: bytes) -> bytes:
        if name == "proto-ver":
            return json.dumps({"prov": {"ver": "v1.1", "sec_ver": self.security, "sec_patch_ver": 1,
                                        "cap": ["wifi_scan"]}}).encode()
        if name == "prov-session":
            return self.session(pb.SessionData.FromString(data)).SerializeToString()
        if not self.authed:
            raise ValueError("no session")
        body = self.dec(data)
        if name == "prov-config":
            out = self.config(pb.WiFiConfigPayload.FromString(body))
        elif name == "prov-scan":
            out = self.scan(pb.WiFiScanPayload.FromString(body))
        elif name == "prov-ctrl":
            self.staged, self.state = None, (2, None)
            out = pb.WiFiCtrlPayload(msg=pb.TypeRespCtrlReset, status=0)
            out.resp_ctrl_reset.SetInParent()
        else:
            return self.enc(body.upper())
        return self.enc(out.SerializeToString())

    def session(self, req):
        resp = pb.SessionData(sec_ver=req.sec_ver)
        if self.security == 0:
            resp.sec0.msg = pb.S0_Session_Response
            resp.sec0.sr.status = 0
        elif self.security == 1 and req.sec1.msg == pb.Session_Command0:
            key = X25519PrivateKey.generate()
            self.dev_pub = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
            self.cli_pub = req.sec1.sc0.client_pubkey
            shared = key.exchange(X25519PublicKey.from_public_bytes(self.cli_pub))
            if self.pop:
                shared = bytes(a ^ b for a, b in zip(shared, hashlib.sha256(self.pop.encode()).digest()))
            rnd = os.urandom(16)
            self.ctr = Cipher(algorithms.AES(shared), modes.CTR(rnd)).encryptor()
            resp.sec1.msg = pb.Session_Response0
            resp.sec1.sr0.device_pubkey, resp.sec1.sr0.device_random = self.dev_pub, rnd
        elif self.security == 1 and req.sec1.msg == pb.Session_Command1:
            resp.sec1.msg = pb.Session_Response1
            if self.ctr.update(req.sec1.sc1.client_verify_data) != self.dev_pub:
                resp.sec1.sr1.status = pb.CryptoError  # wrong PoP
                self.ctr = None
            else:
                resp.sec1.sr1.device_verify_data = self.ctr.update(self.cli_pub)
                self.authed = True
        elif self.security == 2 and req.sec2.msg == pb.S2Session_Command0:
            import srp

            resp.sec2.msg = pb.S2Session_Response0
            if req.sec2.sc0.client_username.decode() != self.username:
                resp.sec2.sr0.status = pb.InvalidArgument
                return resp
            self.svr = srp.Verifier(self.username, self.salt, self.vkey, req.sec2.sc0.client_pubkey, **srp_params())
            s, b_pub = self.svr.get_challenge()
            resp.sec2.sr0.device_salt, resp.sec2.sr0.device_pubkey = s, b_pub
        elif self.security == 2 and req.sec2.msg == pb.S2Session_Command1:
            resp.sec2.msg = pb.S2Session_Response1
            hamk = self.svr.verify_session(req.sec2.sc1.client_proof)
            if hamk is None:
                resp.sec2.sr1.status = pb.CryptoError
            else:
                self.gcm = AESGCM(self.svr.get_session_key()[:32])
                self.nonce = bytearray(os.urandom(12))
                resp.sec2.sr1.device_proof, resp.sec2.sr1.device_nonce = hamk, bytes(self.nonce)
                self.authed = True
        else:
            raise ValueError("unexpected session message")
        return resp

    def config(self, req):
        if req.msg == pb.TypeCmdSetConfig:
            self.staged = (req.cmd_set_config.ssid, req.cmd_set_config.passphrase)
            out = pb.WiFiConfigPayload(msg=pb.TypeRespSetConfig)
            out.resp_set_config.status = 0
        elif req.msg == pb.TypeCmdApplyConfig:
            ssid, pw = self.staged or (b"", b"")
            known = self.networks.get(ssid.decode(errors="replace"))
            self.state = (0, None) if known == pw.decode() else (3, 1 if known is None else 0)
            out = pb.WiFiConfigPayload(msg=pb.TypeRespApplyConfig)
            out.resp_apply_config.status = 0
        else:
            out = pb.WiFiConfigPayload(msg=pb.TypeRespGetStatus)
            r = out.resp_get_status
            r.status, r.sta_state = 0, self.state[0]
            if self.state[0] == 0:
                r.connected.ip4_addr, r.connected.ssid, r.connected.channel = "192.168.4.23", self.staged[0], 6
                r.connected.auth_mode = pb.WPA2_PSK
            elif self.state[0] == 3:
                r.fail_reason = self.state[1]
        return out

    def scan(self, req):
        nets = sorted(self.networks)
        out = pb.WiFiScanPayload(status=0)
        if req.msg == pb.TypeCmdScanStart:
            out.msg = pb.TypeRespScanStart
            out.resp_scan_start.SetInParent()
        elif req.msg == pb.TypeCmdScanStatus:
            out.msg = pb.TypeRespScanStatus
            out.resp_scan_status.scan_finished, out.resp_scan_status.result_count = True, len(nets)
        else:
            out.msg = pb.TypeRespScanResult
            first = req.cmd_scan_result.start_index
            for i, ssid in enumerate(nets[first:first + req.cmd_scan_result.count], start=first):
                e = out.resp_scan_result.entries.add()
                e.ssid, e.channel, e.rssi, e.bssid, e.auth = ssid.encode(), 1 + i, -40 - 5 * i, bytes([2, 0, 0, 0, 0, i]), pb.WPA2_PSK
        return out


def _chr_class():
    base = interfaces()[0]

    class _Chr(base):
        """One protocomm endpoint: a write runs the request, a read returns the answer."""

        def __init__(self, dev, name, path, svc_path):
            super().__init__(path, svc_path, char_uuid(ENDPOINTS[name]), ["read", "write"])
            self.dev, self.ep, self.value = dev, name, b""

        @method()
        def ReadValue(self, options: "a{sv}") -> "ay":  # noqa: F821, N802
            return self.value

        @method()
        def WriteValue(self, value: "ay", options: "a{sv}"):  # noqa: F821, N802
            try:
                self.value = self.dev.proto.handle(self.ep, bytes(value))
            except Exception:  # noqa: BLE001 - like protocomm: the request fails, the device lives on
                self.value = b""

    return _Chr


class _Desc(ServiceInterface):
    def __init__(self, name, char_path):
        super().__init__("org.bluez.GattDescriptor1")
        self.label, self.char_path = name, char_path

    @method()
    def ReadValue(self, options: "a{sv}") -> "ay":  # noqa: F821, N802
        return self.label.encode()

    @dbus_property(access=PropertyAccess.READ)
    def UUID(self) -> "s":  # noqa: F821, N802
        return "00002901-0000-1000-8000-00805f9b34fb"

    @dbus_property(access=PropertyAccess.READ)
    def Characteristic(self) -> "o":  # noqa: F821, N802
        return self.char_path

    @dbus_property(access=PropertyAccess.READ)
    def Flags(self) -> "as":  # noqa: N802
        return ["read"]

    def props(self):
        return {"UUID": Variant("s", "00002901-0000-1000-8000-00805f9b34fb"),
                "Characteristic": Variant("o", self.char_path), "Flags": Variant("as", ["read"])}


class EspIdfPeripheral:
    """Register the test device on a BlueZ adapter; ``proto`` holds its protocomm state."""

    def __init__(self, *, security: int, pop: str, username: str = "wifiprov", networks: dict[str, str],
                 adapter: str = "hci1", name: str = "PROV_A1B2C3") -> None:
        self.proto = Protocomm(security, pop, username, networks)
        self.adapter = f"/org/bluez/{adapter}"
        self.name = name
        self.bus = None

    async def start(self) -> "EspIdfPeripheral":
        chr_cls, (_, svc_cls, om_cls, adv_cls) = _chr_class(), interfaces()
        self.bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
        objects = {}
        svc_path = f"{APP}/service0"
        objects[svc_path] = svc_cls(ESP_SERVICE_UUID)
        for i, name in enumerate(ENDPOINTS):
            cpath = f"{svc_path}/char{i}"
            objects[cpath] = chr_cls(self, name, cpath, svc_path)
            objects[f"{cpath}/desc0"] = _Desc(name, cpath)
        self.bus.export(APP, om_cls(objects))
        for path, obj in objects.items():
            self.bus.export(path, obj)
        self.bus.export(f"{APP}/adv0", adv_cls(self.name, [ESP_SERVICE_UUID]))
        await register(self.bus, self.adapter, APP, f"{APP}/adv0")
        return self

    async def stop(self) -> None:
        if self.bus is not None:
            self.bus.disconnect()
            self.bus = None
