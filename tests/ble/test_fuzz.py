"""Hostile frames: >= 200 fuzzed writes never crash or reboot the device; it answers with error
statuses and still provisions afterwards."""

from __future__ import annotations

import asyncio
import json
import random

import pytest
from ble_testlib import POP
from bleak import BleakClient

from fleetdesk.ble import session as p
from fleetdesk.ble.client import ProvisioningClient
from fleetdesk.virtual.ble_link import VirtualBleakClient

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


async def _until(cond, what: str, timeout: float = 10.0) -> None:
    """Wait on the event loop until ``cond()`` holds; fail with ``what`` after ``timeout`` s."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        assert loop.time() < end, what
        await asyncio.sleep(0.02)


def _error_codes(replies: list[bytes]) -> set:
    """The ``code`` of every single-frame plain error reply the board sent."""
    errors = [json.loads(r[4:]) for r in replies if r[:1] == bytes([p.F_FIRST | p.F_LAST]) and r[3:4] == b"\x00"]
    return {e.get("code") for e in errors}


def _frames(rng: random.Random, keys: p.SessionKeys | None) -> list[tuple[int, bytes]]:
    out: list[tuple[int, bytes]] = []
    for _ in range(60):  # random bytes of random sizes
        out.append((rng.randrange(4), bytes(rng.randrange(256) for _ in range(rng.randrange(0, 180)))))
    for _ in range(30):  # well-formed single fragments carrying junk messages
        body = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 150)))
        out.append((rng.randrange(4), bytes([p.F_FIRST | p.F_LAST]) + len(body).to_bytes(2, "big") + body))
    for size in (1025, 4000, 65535):  # announced sizes over the device's limit
        out.append((0, bytes([p.F_FIRST]) + size.to_bytes(2, "big") + b"x" * 100))
    for _ in range(20):  # continuation fragments without a first one, bad flags, lies about length
        out.append((rng.randrange(4), bytes([p.F_LAST]) + b"orphan"))
        out.append((rng.randrange(4), bytes([0x3F]) + b"flags"))
        out.append((rng.randrange(4), bytes([p.F_FIRST | p.F_LAST]) + (5).to_bytes(2, "big") + b"toolongbody"))
    junk_json = [b"{", b"[]", b'"x"', b"null", b'{"v":1}', b'{"v":2,"op":"hello"}', b'{"v":1,"op":"hello","nonce":"zz"}',
                 b'{"v":1,"op":"hello","nonce":"00"}', b'{"v":1,"op":"auth","proof":"00"}', b'{"v":1,"op":"commit"}',
                 b'{"v":1,"op":"' + b"A" * 300 + b'"}', "{\"v\":1,\"op\":\"h\u00e9llo\"}".encode(), b"\xff\xfe"]
    for body in junk_json:
        for ch in range(4):
            out.extend((ch, f) for f in p.fragment(bytes([p.T_PLAIN]) + body, 182))
    for _ in range(20):  # secure-looking frames with random MACs
        body = bytes([p.T_SECURE]) + bytes(rng.randrange(256) for _ in range(4 + 16 * rng.randrange(1, 5) + 16))
        out.extend((rng.randrange(4), f) for f in p.fragment(body, 182))
    if keys is not None:  # correctly encrypted frames that are semantically garbage
        chan = p.SecureChannel(keys)
        for payload in (b"not json", b"{}", b'{"v":1,"op":"nope"}', p.pack_chunk(9, 0, b"x"), b"C\x01",
                        p.pack_chunk(1, 5, b"zz"), b'{"v":1,"op":"set","ssid":""}', b'{"v":1,"op":"set","port":0}',
                        b'{"v":1,"op":"file_begin","file":"key","size":999999,"sha256":"00"}'):
            for ch in range(4):
                out.extend((ch, f) for f in p.fragment(chan.seal(ch, payload), 182))
    rng.shuffle(out)
    return out


async def test_fuzzed_frames_never_crash(start_device, certs):
    dev = start_device()
    rng = random.Random(8)
    replies: list[bytes] = []
    client = BleakClient(dev.address, backend=VirtualBleakClient, mtu=185)
    await client.connect()
    try:
        for uuid in p.CHANNEL_UUIDS:
            await client.start_notify(uuid, lambda _c, d: replies.append(bytes(d)))
        # half of the run inside an authenticated session, so encrypted garbage is exercised too
        nonce = bytes(16)
        hello_frag = p.fragment(p.plain({"v": 1, "op": "hello", "nonce": nonce.hex()}), 182)
        sent = 0
        for frag in hello_frag:
            await client.write_gatt_char(p.CTRL_UUID, frag, response=True)
        r = p.Reassembler()
        messages: list[bytes] = []

        def hello_arrived() -> bool:
            while replies:
                m = r.feed(replies.pop(0))
                if m:
                    messages.append(m)
            return bool(messages)

        await _until(hello_arrived, "the board never answered hello")
        hello = json.loads(messages[-1][1:])
        keys = p.SessionKeys.derive(POP.encode(), nonce, bytes.fromhex(hello["nonce"]))
        await client.write_gatt_char(p.CTRL_UUID, p.fragment(p.plain({"v": 1, "op": "auth", "proof": keys.host_proof.hex()}), 182)[0], response=True)
        frames = _frames(rng, keys)
        for ch, frame in frames:
            if len(frame) > 182:
                frame = frame[:182]
            await client.write_gatt_char(p.CHANNEL_UUIDS[ch], frame, response=True)
            sent += 1
        # oversized ATT writes are refused by the link (ATT error), never reach the app
        with pytest.raises(Exception, match="ATT error 0x0d"):
            await client.write_gatt_char(p.CTRL_UUID, b"\x80" * 300, response=True)
        # every write above was acknowledged (response=True); wait until the board's answers have come in
        await _until(lambda: {"frame", "size", "auth"} <= _error_codes(replies), "the board's error answers never arrived")
    finally:
        await client.disconnect()
    assert sent >= 200
    assert dev.alive(), dev.output()
    codes = _error_codes(replies)
    assert {"frame", "size", "auth"} <= codes, codes
    assert "Traceback" not in dev.output()
    # and it still provisions normally
    async with ProvisioningClient(dev.address, POP, backend=VirtualBleakClient) as prov:
        assert (await prov.set_wifi("fieldnet", "secret123"))["connected"]
        assert (await prov.status())["files"] == {}
    assert dev.alive()
