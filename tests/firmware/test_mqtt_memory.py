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


def test_a_message_too_large_for_the_free_heap_is_dropped_not_the_link(tmp_path):
    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]

    def serve():
        conn, _ = srv.accept()
        with conn:
            conn.sendall(_publish(b"t/big", b"x" * 120000) + _publish(b"t/small", b"ok"))
            conn.recv(16)  # until the client closes

    threading.Thread(target=serve, daemon=True).start()
    script = tmp_path / "t.py"
    script.write_text(f"""
import sys
sys.path.insert(0, {str(FIRMWARE_DIR)!r})
import asyncio
from fd import mqtt
got = []
async def main():
    c = mqtt.MQTTClient("x", "127.0.0.1", {port}, max_packet=200000,
                        on_message=lambda t, p: got.append((t, bytes(p))),
                        on_oversize=lambda t, h, n: got.append(("dropped", t, n)))
    c._reader, c._writer = await asyncio.open_connection("127.0.0.1", {port})
    for _ in range(2):
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
    assert "[('dropped', 't/big', 120007), ('t/small', b'ok')]" in r.stdout, r.stdout
    assert "no free block that large" in r.stdout
