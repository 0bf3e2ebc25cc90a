"""Firmware test fixtures: a plain mTLS mosquitto, a privileged "cloud" MQTT client
(aiomqtt), an HTTPS file server for OTA, and running firmware instances."""

from __future__ import annotations

import asyncio
import json
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from devfs import make_device_fs  # noqa: E402
from tlsbroker import start_broker  # noqa: E402


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    b = start_broker(tmp_path_factory.mktemp("broker"))
    try:
        yield b
    finally:
        b.stop()


class Cloud:
    """Test-side MQTT client that records every message (both '#' and '$aws/#')."""

    def __init__(self, client):
        self.client = client
        self.msgs: list[tuple[str, bytes]] = []
        self._task = None

    async def pump(self):
        async for m in self.client.messages:
            self.msgs.append((str(m.topic), bytes(m.payload)))

    def mark(self) -> int:
        return len(self.msgs)

    async def expect(self, topic, pred=lambda d: True, *, since=0, timeout=20.0):
        """First message on `topic` (after index `since`) whose JSON satisfies `pred`."""
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
            await asyncio.sleep(0.05)
        seen = [t for t, _ in self.msgs[since:]][-20:]
        raise AssertionError(f"no matching message on {topic} within {timeout}s; last topics: {seen}")

    async def send(self, topic, obj, qos=1):
        payload = obj if isinstance(obj, (bytes, str)) else json.dumps(obj)
        await self.client.publish(topic, payload, qos=qos)


@pytest.fixture
async def cloud(broker, tmp_path):
    import aiomqtt

    creds = broker.ca.issue("cloud-test")
    (tmp_path / "c.pem").write_bytes(creds.cert_pem)
    (tmp_path / "c.key").write_bytes(creds.key_pem)
    ctx = ssl.create_default_context(cafile=str(broker.ca_file))
    ctx.load_cert_chain(tmp_path / "c.pem", tmp_path / "c.key")
    async with aiomqtt.Client("localhost", broker.port, identifier="cloud-test", tls_context=ctx) as client:
        await client.subscribe("#", qos=1)
        await client.subscribe("$aws/#", qos=1)
        c = Cloud(client)
        task = asyncio.create_task(c.pump())
        try:
            yield c
        finally:
            task.cancel()


class Device:
    """A firmware process and its console output."""

    def __init__(self, handle, out: bytearray, fs: Path, thing: str):
        self.handle = handle
        self.out = out
        self.fs = fs
        self.thing = thing

    @property
    def console(self) -> str:
        return self.out.decode(errors="replace")

    async def wait_console(self, needle: str, timeout=20.0, count=1):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.console.count(needle) >= count:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"console never showed {needle!r} x{count}:\n{self.console[-3000:]}")

    def settings(self) -> dict:
        return json.loads((self.fs / "settings.json").read_text())


@pytest.fixture
def device_factory(broker, tmp_path):
    from fleetdesk.virtual.runtime import launch_firmware

    started = []

    def start(thing="dev1", *, interpreter="micropython", settings=None, extra=None, env=None,
              creds=True, mac="24:0a:c4:00:00:11", chip="esp32"):
        fs = tmp_path / f"fs-{thing}-{len(started)}"
        c = broker.ca.issue(thing) if creds else None
        make_device_fs(fs, thing=thing, endpoint="localhost", port=broker.port, ca_der=broker.ca.der,
                       cert_der=c.cert_der if c else None, key_der=c.key_der if c else None,
                       settings=settings, extra=extra, compiled=interpreter == "micropython")
        out = bytearray()
        h = launch_firmware(fs, mac=mac, chip=chip, console=out.extend, interpreter=interpreter, env=env)
        d = Device(h, out, fs, thing)
        started.append(d)
        return d

    try:
        yield start
    finally:
        for d in started:
            d.handle.stop()


class FileServer:
    """HTTPS server (cert from the test CA) serving bytes by path; '/trunc/...' lies about length."""

    def __init__(self, broker, tmp: Path):
        self.files: dict[str, bytes] = {}
        files = self.files
        srv = broker.ca.issue("localhost", server=True)
        (tmp / "https.pem").write_bytes(srv.cert_pem + srv.key_pem)

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def do_GET(self):  # noqa: N802
                data = files.get(self.path.removeprefix("/trunc"))
                if data is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data[: len(data) // 2] if self.path.startswith("/trunc") else data)

            def log_message(self, *a):
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

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def files(broker, tmp_path):
    fs = FileServer(broker, tmp_path)
    try:
        yield fs
    finally:
        fs.close()
