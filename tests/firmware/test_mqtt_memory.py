"""The firmware's MQTT client on the MicroPython unix port with a small GC heap: a message
whose buffer cannot be allocated is dropped (its handler told), the link and the next
message are not lost."""

from __future__ import annotations

import socket
import subprocess
import threading

from fleetdesk.paths import FIRMWARE_DIR
from fleetdesk.virtual.runtime import micropython_binary


def _publish(topic: bytes, payload: bytes) -> bytes:
    body = len(topic).to_bytes(2, "big") + topic + payload
    n, var = len(body), bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        var.append(b | (0x80 if n else 0))
        if not n:
            break
    return bytes([0x30]) + bytes(var) + body


def _run_client(tmp_path, packets: bytes, reads: int, on_message: str, extra: str = "") -> str:
    """Serve ``packets`` to the firmware's MQTTClient (max_packet 200 KB) on a 128 KB heap, let it
    read ``reads`` packets as its reader loop does, and return what it printed (the handlers'
    calls last). ``on_message`` is the handler's expression; ``extra`` more keyword arguments."""
    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]

    def serve():
        conn, _ = srv.accept()
        with conn:
            conn.sendall(packets)
            conn.recv(16)  # until the client closes

    threading.Thread(target=serve, daemon=True).start()
    script = tmp_path / "t.py"
    script.write_text(f"""
import sys
sys.path.insert(0, {str(FIRMWARE_DIR)!r})
import asyncio, json
from fd import mqtt
got = []
async def main():
    c = mqtt.MQTTClient("x", "127.0.0.1", {port}, max_packet=200000,
                        on_message={on_message},
                        on_oversize=lambda t, h, n: got.append(("dropped", t, n)){extra})
    c._reader, c._writer = await asyncio.open_connection("127.0.0.1", {port})
    for _ in range({reads}):
        first, body = await c._read_packet()
        if isinstance(body, mqtt._Oversize):
            await c._on_oversize(first, body)
        else:
            await c._on_publish(first, body)
    c._writer.close()
    print(got)
asyncio.run(main())
""")
    try:
        r = subprocess.run([micropython_binary(), "-X", "heapsize=128K", str(script)], capture_output=True,
                           text=True, timeout=60)
    finally:
        srv.close()
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def test_a_message_too_large_for_the_free_heap_is_dropped_not_the_link(tmp_path):
    out = _run_client(tmp_path, _publish(b"t/big", b"x" * 120000) + _publish(b"t/small", b"ok"), 2,
                      "lambda t, p: got.append((t, bytes(p)))")
    assert "[('dropped', 't/big', 120007), ('t/small', b'ok')]" in out, out
    assert "no free block that large" in out


def test_a_shadow_delta_too_large_for_the_free_heap_is_read_in_chunks_without_its_long_strings(tmp_path):
    """skim(topic) True: the delta arrives, its 120 KB string elided; a job document of the
    same size (skim False) is still dropped and its handler told."""
    import ast
    import json

    notes = "n\\\"" * 20000  # escapes across the 1 KB chunk borders
    delta = json.dumps({"version": 9, "state": {"refresh": 3000, "notes": notes, "on": True}}).encode()
    job_topic = b"$aws/things/t/jobs/j1"
    packets = (_publish(b"$aws/things/t/shadow/update/delta", delta) + _publish(job_topic, delta)
               + _publish(b"t/small", b"ok"))
    out = _run_client(tmp_path, packets, 3,
                      "lambda t, p: got.append((t, json.loads(bytes(p)) if len(p) > 2 else bytes(p)))",
                      ",\n                        skim=lambda t: '/shadow/' in t")
    got = ast.literal_eval(out.strip().splitlines()[-1])
    want_state = {"refresh": 3000, "notes": "<a %d-byte value>" % len(json.dumps(notes)), "on": True}
    assert got == [("$aws/things/t/shadow/update/delta", {"version": 9, "state": want_state}),
                   ("dropped", job_topic.decode(), 2 + len(job_topic) + len(delta)), ("t/small", b"ok")], out
    assert "read it in chunks, 1 long string(s) elided" in out, out
