"""What a firmware running under the MicroPython unix port talks to in the firmware tests and
in ``bench/firmware_heap.py``: a recording MQTT peer ("the cloud" side) and an HTTPS file
server for OTA packages, both trusting the test broker's CA.

Emulator side, hand-written: aiomqtt does the MQTT and the standard library's http.server the
HTTP; these only record what arrives and wait on it.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


class NoMessage(AssertionError):
    """No matching message arrived in time (an AssertionError: a test failure names it)."""


class MessageLog:
    """Every message an aiomqtt client receives, in order, with waits on them.

    Call :meth:`pump` as a task; :meth:`mark` is the index of the next message (to wait only
    on what comes after an action).
    """

    def __init__(self, client: Any) -> None:
        self.client = client
        self.msgs: list[tuple[str, bytes]] = []

    async def pump(self) -> None:
        async for m in self.client.messages:
            self.msgs.append((str(m.topic), bytes(m.payload)))

    def mark(self) -> int:
        return len(self.msgs)

    async def expect(self, topic: str, pred: Callable[[Any], bool] = lambda d: True, *, since: int = 0,
                     timeout: float = 20.0, broken: Callable[[], str | None] | None = None) -> Any:
        """The first message on ``topic`` (after index ``since``) whose JSON satisfies ``pred``.

        Args:
            broken: called while waiting; a reason it returns ends the wait at once (a firmware
                seen dying), as a RuntimeError with that reason.

        Raises:
            NoMessage: none within ``timeout`` (the message names the last topics seen).
            RuntimeError: ``broken`` gave a reason.
        """
        deadline = time.monotonic() + timeout
        i = since
        while time.monotonic() < deadline:
            while i < len(self.msgs):
                t, p = self.msgs[i]
                i += 1
                if t == topic:
                    try:
                        d = json.loads(p)
                    except ValueError:
                        continue
                    if pred(d):
                        return d
            why = broken() if broken is not None else None
            if why:
                raise RuntimeError(why)
            await asyncio.sleep(0.05)
        seen = [t for t, _ in self.msgs[since:]][-20:]
        raise NoMessage(f"no matching message on {topic} within {timeout:g} s; last topics: {seen}")

    async def send(self, topic: str, obj: Any, qos: int = 1) -> None:
        """Publish ``obj`` (bytes/str as is, anything else as JSON)."""
        payload = obj if isinstance(obj, (bytes, str)) else json.dumps(obj)
        await self.client.publish(topic, payload, qos=qos)


class OtaFileServer:
    """HTTPS server (its certificate from the broker's CA) serving ``files`` by path.

    ``/trunc/<path>`` serves the first half of ``<path>`` while announcing its full length (a
    transfer cut short).
    """

    def __init__(self, broker: Any, tmp: Path) -> None:
        self.files: dict[str, bytes] = {}
        files = self.files
        srv = broker.ca.issue("localhost", server=True)
        (tmp / "https.pem").write_bytes(srv.cert_pem + srv.key_pem)

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def do_GET(self) -> None:
                data = files.get(self.path.removeprefix("/trunc"))
                if data is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data[: len(data) // 2] if self.path.startswith("/trunc") else data)

            def log_message(self, *a: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(tmp / "https.pem")
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"https://localhost:{self.port}{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
