"""Client for ESP-IDF unified provisioning (protocomm over BLE), so stock ESP-IDF boards work too.

Endpoints are found by the 0x2901 user-description of each characteristic ("prov-session",
"prov-config", "prov-scan", "proto-ver", "prov-ctrl", custom names); a request is a GATT write
followed by a read of the same characteristic, as ESP-IDF's protocomm_ble expects. Security:

- 0: plaintext;
- 1: X25519 key agreement, shared key XOR SHA-256(PoP), one AES-256-CTR stream (IV = the
  device random) for every message in both directions;
- 2: SRP6a (SHA-512, 3072-bit group, RFC 5054 padding, via PyPI ``srp``) with username + PoP,
  then AES-256-GCM with the first 32 bytes of the SRP key and the device's 12-byte nonce
  (incremented per message when the device reports sec_patch_ver 1).

    async with EspProvClient(device, security=2, pop="abcd1234") as esp:
        nets = await esp.scan_wifi()
        await esp.set_wifi_config("ssid", "pass"); await esp.apply_wifi_config()
        status = await esp.wifi_status()
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import struct
from typing import Any

from bleak import BleakClient
from bleak.backends.client import BaseBleakClient
from bleak.backends.device import BLEDevice
from bleak.exc import BleakError
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from fleetdesk.ble.connect import establish_connection
from fleetdesk.ble.espidf_proto import pb
from fleetdesk.errors import BleError

ESP_SERVICE_UUID = "1775244d-6b43-439b-877c-060f2d9bed07"  # ESP-IDF examples' default
USER_DESCRIPTION = "00002901-0000-1000-8000-00805f9b34fb"
STATE_NAMES = {0: "connected", 1: "connecting", 2: "disconnected", 3: "failed"}
FAIL_REASONS = {0: "wrong password (auth error)", 1: "network not found"}
STATUS_NAMES = {0: "Success", 1: "InvalidSecScheme", 2: "InvalidProto", 3: "TooManySessions", 4: "InvalidArgument",
                5: "InternalError", 6: "CryptoError", 7: "InvalidSession"}


class EspProvError(BleError):
    """An ESP-IDF provisioning step failed (``status`` is protocomm's Status when known)."""

    def __init__(self, message: str, advice: str | None = None, status: int | None = None) -> None:
        super().__init__(message, advice)
        self.status = status


# RFC 5054 3072-bit group (= RFC 3526 MODP group 15), generator 5: what ESP-IDF's sec2 uses.
# PyPI srp has no named 3072-bit group, so it is passed as a custom group.
SRP_N_3072 = (
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E"
    "3404DDEF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6"
    "F406B7EDEE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF0598DA48361C55D39A69163F"
    "A8FD24CF5F83655D23DCA3AD961C62F356208552BB9ED529077096966D670C354E4ABC9804F1746C08CA18217C3290"
    "5E462E36CE3BE39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF6955817183995497CEA956AE515"
    "D2261898FA051015728E5A8AAAC42DAD33170D04507A33A85521ABDF1CBA64ECFB850458DBEF0A8AEA71575D060C7D"
    "B3970F85A6E1E4C7ABF5AE8CDB0933D71E8C94E04A25619DCEE3D2261AD2EE6BF12FFA06D98A0864D87602733EC86A"
    "64521F2B18177B200CBBE117577A615D6C770988C0BAD946E208E24FA074E5AB3143DB5BFCE0FD108E4B82D120A93A"
    "D2CAFFFFFFFFFFFFFFFF")
SRP_G = "5"


def srp_params() -> dict[str, Any]:
    """kwargs for srp.User/Verifier/create_salted_verification_key matching ESP-IDF sec2."""
    import srp

    srp.rfc5054_enable(True)  # ESP-IDF pads k, u and H(N) xor H(g) as RFC 5054 does
    # bytes: the OpenSSL-backed srp module hands them to BN_hex2bn
    return {"hash_alg": srp.SHA512, "ng_type": srp.NG_CUSTOM, "n_hex": SRP_N_3072.encode(), "g_hex": SRP_G.encode()}


def _status(code: int, what: str) -> None:
    if code != 0:
        raise EspProvError(f"{what}: device answered {STATUS_NAMES.get(code, code)}", status=code)


class EspProvClient:
    """One protocomm session with an ESP-IDF board.

    Args:
        device: BLEDevice or address.
        security: 0, 1 or 2; None = what the board's proto-ver reports.
        pop: proof-of-possession (sec1) or SRP password (sec2).
        username: SRP username (sec2; ESP-IDF's default is "wifiprov").
        backend: bleak client backend (None = system radio).
    """

    def __init__(self, device: BLEDevice | str, *, security: int | None = None, pop: str = "",
                 username: str = "wifiprov", backend: type[BaseBleakClient] | None = None,
                 **client_kwargs: Any) -> None:
        self.device = device
        self.security = security
        self.pop = pop
        self.username = username
        self.backend = backend
        self.client_kwargs = client_kwargs
        self.client: BleakClient | None = None
        self.endpoints: dict[str, str] = {}
        self.version: dict[str, Any] = {}
        self._ctr: Any = None
        self._gcm: AESGCM | None = None
        self._nonce = bytearray()
        self._patch = 0

    async def __aenter__(self) -> "EspProvClient":
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Disconnect (idempotent)."""
        client, self.client = self.client, None
        if client is not None:
            try:
                await client.disconnect()
            except (BleakError, OSError, EOFError):
                pass

    # ---- transport ----------------------------------------------------------------------
    async def connect(self) -> dict[str, Any]:
        """Connect, map endpoint names, read proto-ver and establish the secure session."""
        self.client = await establish_connection(self.device, backend=self.backend, **self.client_kwargs)
        try:
            for service in self.client.services:
                for char in service.characteristics:
                    for desc in char.descriptors:
                        if desc.uuid == USER_DESCRIPTION:
                            name = bytes(await self.client.read_gatt_descriptor(desc.handle)).decode(errors="replace")
                            self.endpoints[name.strip("\x00")] = char.uuid
            for needed in ("prov-session", "proto-ver"):
                if needed not in self.endpoints:
                    raise EspProvError(f"the device has no {needed!r} endpoint: not an ESP-IDF provisioning service",
                                       "Check that the board runs ESP-IDF wifi_provisioning over BLE.")
            raw = await self.xfer("proto-ver", b"ESP")
            try:
                self.version = json.loads(raw)
            except ValueError:
                self.version = {}
            prov = self.version.get("prov", {})
            self._patch = int(prov.get("sec_patch_ver", 0))
            if self.security is None:
                self.security = int(prov.get("sec_ver", 0))
            await self._session()
        except BaseException:
            await self.close()
            raise
        return self.version

    async def xfer(self, endpoint: str, data: bytes) -> bytes:
        """Raw protocomm exchange: write the request, read the response."""
        if self.client is None:
            raise EspProvError("not connected")
        uuid = self.endpoints.get(endpoint)
        if uuid is None:
            raise EspProvError(f"the device has no {endpoint!r} endpoint", f"endpoints: {', '.join(sorted(self.endpoints))}")
        await self.client.write_gatt_char(uuid, data, response=True)
        return bytes(await self.client.read_gatt_char(uuid))

    # ---- security -------------------------------------------------------------------------
    async def _session(self) -> None:
        if self.security == 0:
            req = pb.SessionData(sec_ver=pb.SecScheme0)
            req.sec0.sc.SetInParent()
            resp = pb.SessionData.FromString(await self.xfer("prov-session", req.SerializeToString()))
            _status(resp.sec0.sr.status, "session")
        elif self.security == 1:
            await self._sec1()
        elif self.security == 2:
            await self._sec2()
        else:
            raise EspProvError(f"unsupported security scheme {self.security}")

    async def _sec1(self) -> None:
        key = X25519PrivateKey.generate()
        pub = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        req = pb.SessionData(sec_ver=pb.SecScheme1)
        req.sec1.msg = pb.Session_Command0
        req.sec1.sc0.client_pubkey = pub
        resp = pb.SessionData.FromString(await self.xfer("prov-session", req.SerializeToString()))
        _status(resp.sec1.sr0.status, "security 1 setup")
        dev_pub = resp.sec1.sr0.device_pubkey
        shared = key.exchange(X25519PublicKey.from_public_bytes(dev_pub))
        if self.pop:
            digest = hashlib.sha256(self.pop.encode()).digest()
            shared = bytes(a ^ b for a, b in zip(shared, digest, strict=True))
        self._ctr = Cipher(algorithms.AES(shared), modes.CTR(resp.sec1.sr0.device_random)).encryptor()
        req = pb.SessionData(sec_ver=pb.SecScheme1)
        req.sec1.msg = pb.Session_Command1
        req.sec1.sc1.client_verify_data = self._ctr.update(dev_pub)
        resp = pb.SessionData.FromString(await self.xfer("prov-session", req.SerializeToString()))
        if resp.sec1.sr1.status != 0 or self._ctr.update(resp.sec1.sr1.device_verify_data) != pub:
            raise EspProvError("wrong proof-of-possession", "Use the PoP printed for this board (security 1).",
                               status=resp.sec1.sr1.status or 6)

    async def _sec2(self) -> None:
        import srp

        user = srp.User(self.username, self.pop, **srp_params())
        _, a_pub = user.start_authentication()
        req = pb.SessionData(sec_ver=pb.SecScheme2)
        req.sec2.msg = pb.S2Session_Command0
        req.sec2.sc0.client_username = self.username.encode()
        req.sec2.sc0.client_pubkey = a_pub
        resp = pb.SessionData.FromString(await self.xfer("prov-session", req.SerializeToString()))
        _status(resp.sec2.sr0.status, "security 2 setup")
        proof = user.process_challenge(resp.sec2.sr0.device_salt, resp.sec2.sr0.device_pubkey)
        if proof is None:
            raise EspProvError("the device's SRP challenge failed the safety checks", status=6)
        req = pb.SessionData(sec_ver=pb.SecScheme2)
        req.sec2.msg = pb.S2Session_Command1
        req.sec2.sc1.client_proof = proof
        resp = pb.SessionData.FromString(await self.xfer("prov-session", req.SerializeToString()))
        if resp.sec2.sr1.status != 0:
            raise EspProvError("wrong proof-of-possession (SRP username or password)",
                               "Use the username and PoP set for this board (security 2).", status=resp.sec2.sr1.status)
        user.verify_session(resp.sec2.sr1.device_proof)
        if not user.authenticated():
            raise EspProvError("the device failed to prove it knows the SRP verifier (wrong device?)", status=6)
        self._gcm = AESGCM(user.get_session_key()[:32])
        self._nonce = bytearray(resp.sec2.sr1.device_nonce)

    def _next_nonce(self) -> bytes:
        nonce = bytes(self._nonce)
        if self._patch == 1:
            self._nonce[8:] = struct.pack(">I", (struct.unpack(">I", self._nonce[8:])[0] + 1) & 0xFFFFFFFF)
        return nonce

    def _session_gcm(self) -> AESGCM:
        if self._gcm is None:
            raise EspProvError("no secure session yet", "establish the session before sending requests")
        return self._gcm

    def encrypt(self, data: bytes) -> bytes:
        """Encrypt one request for the current session."""
        if self.security == 1:
            return self._ctr.update(data)
        if self.security == 2:
            return self._session_gcm().encrypt(self._next_nonce(), data, None)
        return data

    def decrypt(self, data: bytes) -> bytes:
        """Decrypt one response for the current session."""
        if self.security == 1:
            return self._ctr.update(data)
        if self.security == 2:
            gcm = self._session_gcm()
            try:
                return gcm.decrypt(self._next_nonce(), data, None)
            except Exception as exc:  # cryptography's InvalidTag
                raise EspProvError("response failed AES-GCM authentication", status=6) from exc
        return data

    async def call(self, endpoint: str, data: bytes) -> bytes:
        """Encrypted request/response on any endpoint (also custom ones)."""
        return self.decrypt(await self.xfer(endpoint, self.encrypt(data)))

    # ---- wifi_provisioning -----------------------------------------------------------------
    async def scan_wifi(self, *, blocking: bool = True, passive: bool = False, group_channels: int = 0,
                        period_ms: int = 120) -> list[dict[str, Any]]:
        """prov-scan: start, wait, fetch results -> [{"ssid", "channel", "rssi", "bssid", "auth"}]."""
        req = pb.WiFiScanPayload(msg=pb.TypeCmdScanStart)
        req.cmd_scan_start.blocking = blocking
        req.cmd_scan_start.passive = passive
        req.cmd_scan_start.group_channels = group_channels
        req.cmd_scan_start.period_ms = period_ms
        _status(pb.WiFiScanPayload.FromString(await self.call("prov-scan", req.SerializeToString())).status, "scan start")
        for _ in range(50):
            req = pb.WiFiScanPayload(msg=pb.TypeCmdScanStatus)
            req.cmd_scan_status.SetInParent()
            resp = pb.WiFiScanPayload.FromString(await self.call("prov-scan", req.SerializeToString()))
            _status(resp.status, "scan status")
            if resp.resp_scan_status.scan_finished:
                break
            await asyncio.sleep(0.2)
        count = resp.resp_scan_status.result_count
        out: list[dict[str, Any]] = []
        while len(out) < count:
            req = pb.WiFiScanPayload(msg=pb.TypeCmdScanResult)
            req.cmd_scan_result.start_index = len(out)
            req.cmd_scan_result.count = min(4, count - len(out))
            resp = pb.WiFiScanPayload.FromString(await self.call("prov-scan", req.SerializeToString()))
            _status(resp.status, "scan result")
            if not resp.resp_scan_result.entries:
                break
            for e in resp.resp_scan_result.entries:
                out.append({"ssid": e.ssid.decode(errors="replace"), "channel": e.channel, "rssi": e.rssi,
                            "bssid": e.bssid.hex(":"), "auth": e.auth})
        return out

    async def set_wifi_config(self, ssid: str, passphrase: str) -> None:
        """prov-config set: stage the station credentials."""
        req = pb.WiFiConfigPayload(msg=pb.TypeCmdSetConfig)
        req.cmd_set_config.ssid = ssid.encode()
        req.cmd_set_config.passphrase = passphrase.encode()
        resp = pb.WiFiConfigPayload.FromString(await self.call("prov-config", req.SerializeToString()))
        _status(resp.resp_set_config.status, "set Wi-Fi config")

    async def apply_wifi_config(self) -> None:
        """prov-config apply: the board starts connecting."""
        req = pb.WiFiConfigPayload(msg=pb.TypeCmdApplyConfig)
        req.cmd_apply_config.SetInParent()
        resp = pb.WiFiConfigPayload.FromString(await self.call("prov-config", req.SerializeToString()))
        _status(resp.resp_apply_config.status, "apply Wi-Fi config")

    async def wifi_status(self) -> dict[str, Any]:
        """prov-config status -> {"state": connected|connecting|disconnected|failed, ...}."""
        req = pb.WiFiConfigPayload(msg=pb.TypeCmdGetStatus)
        req.cmd_get_status.SetInParent()
        r = pb.WiFiConfigPayload.FromString(await self.call("prov-config", req.SerializeToString())).resp_get_status
        _status(r.status, "Wi-Fi status")
        out: dict[str, Any] = {"state": STATE_NAMES.get(r.sta_state, str(r.sta_state))}
        which = r.WhichOneof("state")
        if which == "connected":
            out.update(ip=r.connected.ip4_addr, ssid=r.connected.ssid.decode(errors="replace"),
                       channel=r.connected.channel)
        elif which == "fail_reason":
            out["reason"] = FAIL_REASONS.get(r.fail_reason, str(r.fail_reason))
        elif which == "attempt_failed":
            out["attempts_remaining"] = r.attempt_failed.attempts_remaining
        return out

    async def wait_connected(self, timeout: float = 20.0) -> dict[str, Any]:
        """Poll status until connected or failed (raises EspProvError on failure)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            status = await self.wifi_status()
            if status["state"] == "connected":
                return status
            if status["state"] == "failed":
                raise EspProvError(f"the board could not join the network: {status.get('reason')}",
                                   "Check the SSID and password, then send them again.")
            if asyncio.get_running_loop().time() > deadline:
                raise EspProvError("the board did not connect in time", "Check the access point is in range.")
            await asyncio.sleep(0.3)

    async def ctrl_reset(self) -> None:
        """prov-ctrl reset: the board forgets the staged credentials (ESP-IDF >= 5.1)."""
        req = pb.WiFiCtrlPayload(msg=pb.TypeCmdCtrlReset)
        req.cmd_ctrl_reset.SetInParent()
        _status(pb.WiFiCtrlPayload.FromString(await self.call("prov-ctrl", req.SerializeToString())).status, "reset")


def random_pop() -> str:
    """A fresh PoP for an ESP-IDF board (16 hex characters)."""
    return os.urandom(8).hex()
