"""Provisioning client for the Fleetdesk BLE protocol v1 (firmware/PROTOCOL.md).

Works over any bleak backend (BlueZ, CoreBluetooth, WinRT, or the virtual one). Every
operation survives a dropped link: the client reconnects with the backoff table, runs a
new PoP handshake and repeats the step; file transfers resume at the offset the device
reports.

    async with ProvisioningClient(device, pop="...") as prov:
        nets = await prov.wifi_scan()
        await prov.set_wifi("fieldnet", "secret")
        await prov.set_cloud("a1b2-ats.iot.eu-west-1.amazonaws.com", 8883, "thing-1")
        await prov.send_file("ca", ca_der); ...
        await prov.commit()
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
from typing import Any, Awaitable, Callable, TypeVar

from bleak import BleakClient
from bleak.backends.client import BaseBleakClient
from bleak.backends.device import BLEDevice
from bleak.exc import BleakError

from fleetdesk.ble import session as proto
from fleetdesk.ble.connect import establish_connection
from fleetdesk.errors import BleError

log = logging.getLogger(__name__)
T = TypeVar("T")
Progress = Callable[[str, int, int], None]  # (file, bytes acknowledged, total)
REPLY_TIMEOUT = 15.0
MAX_RECONNECTS = 4
RECONNECT_DELAY = 0.25  # let both stacks settle after a drop before reconnecting


class ProvisioningError(BleError):
    """The device refused a step; ``code`` is the protocol's error code (e.g. "pop", "commit")."""

    def __init__(self, message: str, advice: str | None = None, code: str = "", reply: dict | None = None) -> None:
        super().__init__(message, advice)
        self.code = code
        self.reply = reply or {}


class LinkLost(BleError):
    """The BLE link dropped in the middle of a step (the client reconnects and resumes)."""


_ADVICE = {
    "pop": "Check the proof-of-possession secret (production record / label) and retry.",
    "locked": "The board refuses PoP attempts for a while after 5 wrong ones: wait, then retry with the right PoP.",
    "commit": "Fix the listed items, resend them and commit again; the device stays in Config mode.",
    "version": "Update Fleetdesk or the board's firmware so both speak the same protocol version.",
}


class ProvisioningClient:
    """One provisioning run against one board.

    Args:
        device: BLEDevice from a scan, or an address.
        pop: the board's proof-of-possession secret.
        backend: bleak client backend class (None = system radio).
        progress: called as (file, acknowledged bytes, total) during transfers.
        client_kwargs: extra BleakClient kwargs (``mtu`` for the virtual backend).
    """

    def __init__(self, device: BLEDevice | str, pop: str | bytes, *, backend: type[BaseBleakClient] | None = None,
                 progress: Progress | None = None, connect_attempts: int = 4, **client_kwargs: Any) -> None:
        self.device = device
        self.pop = pop.encode() if isinstance(pop, str) else bytes(pop)
        self.backend = backend
        self.progress = progress
        self.connect_attempts = connect_attempts
        self.client_kwargs = client_kwargs
        self.client: BleakClient | None = None
        self.info: dict[str, Any] = {}
        self.reconnects = 0
        self._chan: proto.SecureChannel | None = None
        self._queues: list[asyncio.Queue[bytes]] = []
        self._reasm: list[proto.Reassembler] = []
        self._lost = asyncio.Event()
        self.corrupt_next_chunk = False  # test hook: send one chunk with a wrong CRC-32

    async def __aenter__(self) -> "ProvisioningClient":
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ---- link ---------------------------------------------------------------------
    async def connect(self) -> dict[str, Any]:
        """Connect, subscribe and run the PoP handshake. Returns the device's hello."""
        self._lost = asyncio.Event()
        self.client = await establish_connection(
            self.device, backend=self.backend, max_attempts=self.connect_attempts,
            disconnected_callback=lambda _c: self._lost.set(), **self.client_kwargs)
        self._queues = [asyncio.Queue() for _ in proto.CHANNEL_UUIDS]
        self._reasm = [proto.Reassembler() for _ in proto.CHANNEL_UUIDS]
        try:
            if self.client.services.get_characteristic(proto.CTRL_UUID) is None:
                raise LinkLost(f"{getattr(self.device, 'name', None) or self.device} does not offer the Fleetdesk "
                               "provisioning service (yet)",
                               "Check that this is a Fleetdesk board in Config mode.")
            for ch, uuid in enumerate(proto.CHANNEL_UUIDS):
                await self.client.start_notify(uuid, self._on_notify(ch))
            await self._handshake()
        except BaseException:
            await self.close()  # never leave the board's only connection slot taken
            raise
        return self.info

    def _on_notify(self, ch: int) -> Callable[[Any, bytearray], None]:
        def cb(_char: Any, data: bytearray) -> None:
            try:
                msg = self._reasm[ch].feed(bytes(data))
            except proto.FrameError as exc:
                log.warning("bad notification fragment on channel %d: %s", ch, exc)
                return
            if msg is not None:
                self._queues[ch].put_nowait(msg)
        return cb

    @property
    def mtu(self) -> int:
        """Negotiated ATT MTU (from bleak's max write size)."""
        assert self.client is not None
        char = self.client.services.get_characteristic(proto.BULK_UUID)
        return (char.max_write_without_response_size if char else 20) + 3

    async def close(self) -> None:
        """Disconnect (idempotent)."""
        client, self.client = self.client, None
        self._chan = None
        if client is not None:
            try:
                await client.disconnect()
            except (BleakError, OSError):
                pass

    async def _handshake(self) -> None:
        nonce = os.urandom(16)
        hello = await self._plain({"v": proto.VERSION, "op": "hello", "nonce": nonce.hex()})
        keys = proto.SessionKeys.derive(self.pop, nonce, bytes.fromhex(hello["nonce"]))
        reply = await self._plain({"v": proto.VERSION, "op": "auth", "proof": keys.host_proof.hex()})
        if bytes.fromhex(reply.get("proof", "")) != keys.device_proof:
            raise ProvisioningError("the device did not prove it knows the PoP (wrong device?)",
                                    "Check that you connected to the board you meant to.", code="pop")
        self.info = hello
        self._chan = proto.SecureChannel(keys)

    # ---- request/response -------------------------------------------------------------
    async def _send(self, ch: int, message: bytes) -> bytes:
        if self.client is None or not self.client.is_connected or self._lost.is_set():
            raise LinkLost("BLE link lost")
        queue = self._queues[ch]
        while not queue.empty():
            queue.get_nowait()
        size = self.mtu - 3
        try:
            for frag in proto.fragment(message, size):
                await self.client.write_gatt_char(proto.CHANNEL_UUIDS[ch], frag, response=True)
        except (BleakError, OSError, EOFError, asyncio.TimeoutError) as exc:  # EOFError: BlueZ bus closed
            raise LinkLost(f"BLE link lost while writing ({exc!r})") from exc
        get = asyncio.ensure_future(queue.get())
        lost = asyncio.ensure_future(self._lost.wait())
        done, _ = await asyncio.wait({get, lost}, timeout=REPLY_TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
        lost.cancel()
        if get in done:
            return get.result()
        get.cancel()
        if lost in done:
            raise LinkLost("BLE link lost while waiting for the reply")
        raise LinkLost(f"no reply from the device within {REPLY_TIMEOUT:.0f} s")

    def _check(self, reply: dict[str, Any]) -> dict[str, Any]:
        if reply.get("ok"):
            return reply
        code = reply.get("code", "")
        raise ProvisioningError(reply.get("error") or f"device refused the request ({code})",
                                _ADVICE.get(code), code=code, reply=reply)

    async def _plain(self, obj: dict[str, Any]) -> dict[str, Any]:
        raw = await self._send(proto.CH_CTRL, proto.plain(obj))
        return self._check(self._decode(proto.CH_CTRL, raw))

    def _decode(self, ch: int, raw: bytes) -> dict[str, Any]:
        if not raw:
            raise ProvisioningError("empty reply from the device", code="frame")
        if raw[0] == proto.T_SECURE:
            if self._chan is None:
                raise ProvisioningError("unexpected encrypted reply", code="frame")
            try:
                raw = self._chan.open(ch, raw)
            except proto.FrameError as exc:
                raise ProvisioningError(f"reply failed authentication: {exc}", code="auth") from exc
            return json.loads(raw)
        return json.loads(raw[1:])

    async def _secure(self, ch: int, payload: bytes | dict[str, Any], check: bool = True) -> dict[str, Any]:
        if self._chan is None:
            raise LinkLost("no session")
        if isinstance(payload, dict):
            payload = json.dumps({"v": proto.VERSION, **payload}).encode()
        reply = self._decode(ch, await self._send(ch, self._chan.seal(ch, payload)))
        return self._check(reply) if check else reply

    async def _resilient(self, step: Callable[[], Awaitable[T]]) -> T:
        """Run a step; on a lost link reconnect (new session) and run it again."""
        while True:
            try:
                if self.client is None or self._chan is None:
                    await self.connect()
                return await step()
            except LinkLost as exc:
                self.reconnects += 1
                if self.reconnects > MAX_RECONNECTS:
                    raise BleError(f"BLE link kept dropping ({exc})",
                                   "Move closer to the board and run the step again: it resumes.") from exc
                log.info("link lost (%s); reconnecting", exc)
                await self.close()
                # after a drop the OS may have forgotten the device object: look it up afresh
                self.device = getattr(self.device, "address", self.device)
                await asyncio.sleep(RECONNECT_DELAY)

    # ---- operations -------------------------------------------------------------------
    async def status(self) -> dict[str, Any]:
        """Staged state on the device (Wi-Fi, cloud, per-file progress)."""
        return await self._resilient(lambda: self._secure(proto.CH_CTRL, {"op": "status"}))

    async def wifi_scan(self) -> list[dict[str, Any]]:
        """Networks the board sees: [{"ssid", "rssi", "auth"}]."""
        reply = await self._resilient(lambda: self._secure(proto.CH_WIFI, {"op": "scan"}))
        return reply["networks"]

    async def set_wifi(self, ssid: str, password: str) -> dict[str, Any]:
        """Stage Wi-Fi; the board tries it at once. Returns {"connected", "reason"}."""
        return await self._resilient(lambda: self._secure(proto.CH_WIFI, {"op": "set", "ssid": ssid, "password": password}))

    async def set_cloud(self, endpoint: str, port: int, thing_name: str, region: str | None = None) -> None:
        """Stage the MQTT endpoint and thing name."""
        req = {"op": "set", "endpoint": endpoint, "port": port, "thing_name": thing_name}
        if region:
            req["region"] = region
        await self._resilient(lambda: self._secure(proto.CH_CLOUD, req))

    async def send_file(self, name: str, data: bytes) -> None:
        """Send CA/cert/key in CRC-checked chunks; resumes where the device says; SHA-256 checked."""
        if name not in proto.FILES:
            raise BleError(f"unknown file {name!r}", f"use one of {', '.join(proto.FILES[:3])}")
        idx = proto.FILES.index(name)
        sha = hashlib.sha256(data).hexdigest()

        async def step() -> None:
            for _round in range(3):
                reply = await self._secure(proto.CH_CTRL, {"op": "file_begin", "file": name, "size": len(data), "sha256": sha})
                nxt = reply["next"]
                size = proto.chunk_size(self.mtu)
                while nxt < len(data):
                    piece = data[nxt:nxt + size]
                    crc = proto.crc32(piece)
                    if self.corrupt_next_chunk:
                        self.corrupt_next_chunk, crc = False, crc ^ 0xFFFFFFFF
                    r = await self._secure(proto.CH_BULK, proto.pack_chunk(idx, nxt, piece, crc), check=False)
                    if not r.get("ok") and r.get("code") not in ("crc", "offset"):
                        self._check(r)
                    nxt = r["next"]
                    if self.progress:
                        self.progress(name, nxt, len(data))
                end = await self._secure(proto.CH_CTRL, {"op": "file_end", "file": name}, check=False)
                if end.get("ok"):
                    return
                if end.get("code") != "sha256":
                    self._check(end)
            raise ProvisioningError(f"{name} kept failing its SHA-256 check", code="sha256")

        await self._resilient(step)

    async def leave(self) -> dict[str, Any]:
        """Send an already-provisioned board back to Normal mode without changes."""
        return await self._resilient(lambda: self._secure(proto.CH_CTRL, {"op": "leave"}))

    async def commit(self) -> dict[str, Any]:
        """Ask the board to check everything and leave Config mode.

        Raises:
            ProvisioningError: code "commit" with ``reply["errors"]`` listing each failed check.
        """
        return await self._resilient(lambda: self._secure(proto.CH_CTRL, {"op": "commit"}))
