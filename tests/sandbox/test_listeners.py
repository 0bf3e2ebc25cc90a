"""What the sandbox listens on, read from the kernel's socket table (/proc/net/tcp*), not its config.

Without --host nothing listens beyond loopback; with --host only the device-facing mTLS port
and the SigV4 WebSockets port are on every interface (the control plane and the broker's
internal listener stay on 127.0.0.1).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from fleetdesk.sandbox.child import start_sandbox, stop_sandbox

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")]


def _socket_inodes(pid: int) -> set[str]:
    out = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            out.add(target[8:-1])
    return out


def _addr(hexaddr: str) -> tuple[str, int]:
    host, port = hexaddr.split(":")
    if len(host) == 8:
        ip = ".".join(str(int(host[i:i + 2], 16)) for i in (6, 4, 2, 0))
    else:
        words = [host[i:i + 8] for i in range(0, 32, 8)]
        raw = b"".join(bytes.fromhex(w)[::-1] for w in words)
        ip = ":".join(raw[i:i + 2].hex() for i in range(0, 16, 2))
    return ip, int(port, 16)


def listening(pids: list[int]) -> set[tuple[str, int]]:
    """(address, port) of every LISTEN socket the given processes hold."""
    inodes = set().union(*(_socket_inodes(p) for p in pids))
    out = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            cols = line.split()
            if cols[3] == "0A" and cols[9] in inodes:
                out.add(_addr(cols[1]))
    return out


def _pids(info) -> list[int]:
    mosquitto = int((Path(info.state_dir) / "broker" / "mosquitto.pid").read_text())
    return [info.pid, mosquitto]


LOOPBACK = ("127.0.0.1", "0000:0000:0000:0000:0000:0000:0000:0001")


def test_nothing_listens_beyond_loopback_by_default(sandbox):
    socks = listening(_pids(sandbox))
    internal = json.loads((Path(sandbox.state_dir) / "endpoint.json").read_text())["internal_port"]
    ports = {p for _, p in socks}
    assert {sandbox.mqtt_port, sandbox.ws_port, int(sandbox.http_endpoint.rsplit(":", 1)[1]), internal} <= ports
    exposed = sorted(s for s in socks if s[0] not in LOOPBACK)
    assert not exposed, f"listening beyond loopback: {exposed}"


def test_with_host_only_the_device_ports_are_exposed(tmp_path):
    proc, info = start_sandbox(tmp_path / "state", extra_args=["--host", "192.0.2.7"])
    try:
        socks = listening(_pids(info))
        exposed = {p for a, p in socks if a not in LOOPBACK}
        assert exposed == {info.mqtt_port, info.ws_port}, sorted(socks)
    finally:
        stop_sandbox(proc)
