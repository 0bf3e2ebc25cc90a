"""Host (fleetdesk/ble) and device (firmware/fd) implementations agree on the shared vectors."""

from __future__ import annotations

import datetime as dt
import json
import subprocess

import pytest

from fleetdesk.ble import certs as host_certs
from fleetdesk.ble import session as p
from fleetdesk.errors import BleError

from ble_testlib import DEVICE_MAIN, INTERPRETERS, VECTORS

V = json.loads(VECTORS.read_text())
U = bytes.fromhex


def test_host_keys_and_frames_match_vectors():
    keys = p.SessionKeys.derive(U(V["pop"]), U(V["host_nonce"]), U(V["device_nonce"]))
    assert {k: getattr(keys, k).hex() for k in V["keys"]} == V["keys"]
    host = p.SecureChannel(keys, p.DIR_HOST, p.DIR_DEVICE)
    for fr in V["frames"]:
        if fr["dir"] == "H":
            assert host.seal(fr["chan"], U(fr["plaintext"]), fr["ctr"]).hex() == fr["frame"]
        else:
            assert host.open(fr["chan"], U(fr["frame"])).hex() == fr["plaintext"]
            with pytest.raises(p.FrameError, match="replayed"):
                host.open(fr["chan"], U(fr["frame"]))


def test_host_rejects_tampered_and_misrouted_frames():
    keys = p.SessionKeys.derive(U(V["pop"]), U(V["host_nonce"]), U(V["device_nonce"]))
    frame = U(next(fr["frame"] for fr in V["frames"] if fr["dir"] == "D"))
    chan = next(fr["chan"] for fr in V["frames"] if fr["dir"] == "D")
    tampered = frame[:8] + bytes([frame[8] ^ 0x01]) + frame[9:]
    with pytest.raises(p.FrameError, match="authentication"):
        p.SecureChannel(keys).open(chan, tampered)
    with pytest.raises(p.FrameError, match="authentication"):
        p.SecureChannel(keys).open(chan + 1, frame)
    wrong = p.SessionKeys.derive(b"not-the-pop", U(V["host_nonce"]), U(V["device_nonce"]))
    with pytest.raises(p.FrameError, match="authentication"):
        p.SecureChannel(wrong).open(chan, frame)


def test_host_fragments_crc_chunks_match_vectors():
    for fv in V["fragments"]:
        frags = p.fragment(U(fv["msg"]), fv["size"])
        assert [f.hex() for f in frags] == fv["fragments"]
        assert all(len(f) <= fv["size"] for f in frags)
        r = p.Reassembler()
        assert [r.feed(f) for f in frags][-1] == U(fv["msg"])
    assert all(p.crc32(U(c["data"])) == c["crc"] for c in V["crc32"])
    assert {str(m): p.chunk_size(m) for m in map(int, V["chunk_size"])} == V["chunk_size"]
    assert {u: p.uuid_le(u).hex() for u in V["uuid_le"]} == V["uuid_le"]


def test_host_cert_key_checks_match_vectors():
    for pv in V["pairs"]:
        now = dt.datetime.strptime(pv["now"], "%Y%m%d%H%M%S").replace(tzinfo=dt.timezone.utc)
        if pv["name"] == "garbage-cert":
            with pytest.raises(BleError, match="neither PEM nor DER"):
                host_certs.check_pair(U(pv["cert"]), U(pv["key"]), now)
            continue
        got = host_certs.check_pair(U(pv["cert"]), U(pv["key"]), now)
        assert (got is None) if pv["result"] is None else (pv["result"] in got), (pv["name"], got)


@pytest.mark.parametrize("interpreter", ["micropython", "cpython"])
def test_device_code_matches_vectors(interpreter):
    script = DEVICE_MAIN.with_name("mp_vectors.py")
    out = subprocess.run([INTERPRETERS[interpreter], str(script), str(VECTORS)], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.startswith("OK "), out.stdout
    assert int(out.stdout.split()[1]) >= 40
