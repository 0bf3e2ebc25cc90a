# Device-side check of the shared vectors: run under the MicroPython unix port AND CPython.
#   micropython tests/ble/mp_vectors.py tests/vectors/ble_v1.json
# Prints "OK <n checks>" or raises.
import sys

HERE = sys.argv[0].rsplit("/", 1)[0] if "/" in sys.argv[0] else "."
sys.path.insert(0, HERE + "/../../firmware/hal")
sys.path.insert(0, HERE + "/../../firmware")

import json

from fd import ble_der, ble_proto as p
from fd.ble_gatt import uuid_le

with open(sys.argv[1]) as f:
    V = json.loads(f.read())
n = 0


def eq(a, b, what):
    global n
    if a != b:
        raise AssertionError("%s: %r != %r" % (what, a, b))
    n += 1


u = p.unhex
eq(V["version"], p.VERSION, "version")
keys = p.derive(u(V["pop"]), u(V["host_nonce"]), u(V["device_nonce"]))
for k, v in V["keys"].items():
    eq(p.hexs(keys[k]), v, "key " + k)

# the device seals D frames identically and opens H frames
dev = p.SecureChannel(keys, p.DIR_DEVICE, p.DIR_HOST)
for fr in V["frames"]:
    frame = u(fr["frame"])
    if fr["dir"] == "D":
        eq(p.hexs(dev.seal(fr["chan"], u(fr["plaintext"]), fr["ctr"])), fr["frame"], "seal")
    else:
        eq(p.hexs(dev.open(fr["chan"], frame)), fr["plaintext"], "open")
        for bad, code in ((frame, "replay"), (frame[:-1] + bytes([frame[-1] ^ 1]), "auth"), (frame[:10], "frame")):
            try:
                dev.open(fr["chan"], bad)
                raise AssertionError("accepted a bad frame")
            except p.ProtoError as exc:
                eq(exc.code, code, "reject")
# a frame moved to another channel fails authentication
host_first = [fr for fr in V["frames"] if fr["dir"] == "H"][0]
try:
    p.SecureChannel(keys, p.DIR_DEVICE, p.DIR_HOST).open(host_first["chan"] + 1, u(host_first["frame"]))
    raise AssertionError("accepted a frame on the wrong channel")
except p.ProtoError as exc:
    eq(exc.code, "auth", "channel binding")

for fv in V["fragments"]:
    frags = p.fragment(u(fv["msg"]), fv["size"])
    eq([p.hexs(x) for x in frags], fv["fragments"], "fragment")
    r = p.Reassembler(limit=4096)
    out = None
    for x in frags:
        out = r.feed(x)
    eq(p.hexs(out), fv["msg"], "reassemble")
for cv in V["crc32"]:
    eq(p.crc32(u(cv["data"])), cv["crc"], "crc32")
    eq(p._crc32_soft(u(cv["data"])), cv["crc"], "crc32 (no binascii.crc32)")
for mtu, size in V["chunk_size"].items():
    eq(p.chunk_size(int(mtu)), size, "chunk_size")
for uuid, le in V["uuid_le"].items():
    eq(p.hexs(uuid_le(uuid)), le, "uuid_le")
for pv in V["pairs"]:
    got = ble_der.check_pair(u(pv["cert"]), u(pv["key"]), pv["now"])
    if pv["result"] is None:
        eq(got, None, pv["name"])
    else:
        eq(got is not None and pv["result"] in got, True, pv["name"] + ": " + str(got))
print("OK", n)
