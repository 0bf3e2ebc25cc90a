"""Virtual boards on a background loop, the real esptool CLI, and raw socket helpers."""

from __future__ import annotations

import socket
import struct
import subprocess
import sys
import time

import pytest

from fleetdesk.virtual import slip
from fleetdesk.virtual.host import BoardHost
from fleetdesk.virtual.spec import BoardSpec


@pytest.fixture
def host():
    h = BoardHost()
    try:
        yield h
    finally:
        h.close()


@pytest.fixture
def make_board(host, tmp_path):
    """make_board(chip="esp32", throttle=False, **spec) -> a started VirtualBoard."""
    counter = iter(range(1000))

    def _make(chip: str = "esp32", *, throttle: bool = False, power_on: bool = True, **kw):
        spec = BoardSpec(chip=chip, name=kw.pop("name", f"{chip}-{next(counter)}"), throttle=throttle, **kw)
        return host.start_board(spec, tmp_path / "boards", power_on=power_on)

    return _make


def esptool(url: str, *args: str, timeout: float = 90, check: bool = True) -> subprocess.CompletedProcess:
    """Run the real esptool CLI against a port; fail with its output on error."""
    proc = subprocess.run([sys.executable, "-m", "esptool", "--port", url, *args],
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"esptool {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture
def run_esptool():
    """run_esptool(url, *args, check=True) -> CompletedProcess of the real esptool CLI."""
    return esptool


class RawLink:
    """A plain TCP connection speaking SLIP-framed bootloader packets."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.decoder = slip.SlipDecoder()
        self.packets: list[bytes] = []
        self.noise = b""

    def send(self, op: int, data: bytes = b"", chk: int = 0) -> None:
        self.sock.sendall(slip.encode(struct.pack("<BBHI", 0, op, len(data), chk) + data))

    def recv_packet(self, timeout: float = 10.0) -> bytes:
        end = time.monotonic() + timeout
        while not self.packets:
            self.sock.settimeout(max(0.05, end - time.monotonic()))
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("closed")
            packets, noise = self.decoder.feed(data)
            self.packets += packets
            self.noise += noise
        return self.packets.pop(0)

    def read_text(self, needle: bytes, timeout: float = 15.0) -> bytes:
        """Read raw bytes until ``needle`` shows up (a terminal)."""
        buf = b""
        end = time.monotonic() + timeout
        while needle not in buf and time.monotonic() < end:
            self.sock.settimeout(max(0.05, end - time.monotonic()))
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                break
            if not data:
                break
            buf += data
        return buf

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def raw_link():
    links: list[RawLink] = []

    def _open(port: int) -> RawLink:
        link = RawLink(port)
        links.append(link)
        return link

    yield _open
    for link in links:
        link.close()
