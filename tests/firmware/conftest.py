"""Firmware test fixtures: a plain mTLS mosquitto, a privileged "cloud" MQTT client
(aiomqtt), an HTTPS file server for OTA, and running firmware instances."""

from __future__ import annotations

import asyncio
import json
import ssl
import sys
import time
from pathlib import Path

import pytest

from fleetdesk.virtual.firmware_peers import MessageLog, OtaFileServer

sys.path.insert(0, str(Path(__file__).parent))

from devfs import make_device_fs
from tlsbroker import start_broker


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    b = start_broker(tmp_path_factory.mktemp("broker"))
    try:
        yield b
    finally:
        b.stop()


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
        c = MessageLog(client)  # records every message (both '#' and '$aws/#')
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


@pytest.fixture
def files(broker, tmp_path):
    fs = OtaFileServer(broker, tmp_path)
    try:
        yield fs
    finally:
        fs.close()
