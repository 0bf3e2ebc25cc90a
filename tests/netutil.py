"""Addresses and processes a test may count on, instead of assuming them.

Importable as ``netutil`` (tests/ is on sys.path, as for ``helpers_sandbox``).
"""

from __future__ import annotations

import socket
import subprocess
import sys

_held: list[socket.socket] = []


def refused_port() -> int:
    """A loopback TCP port that refuses connections for the rest of this test process.

    The port is bound (so nothing else can take it) but never listened on: a connect gets
    ECONNREFUSED at once. Port 9 ("discard") is usually closed, but nothing promises it.
    """
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    _held.append(sock)
    return sock.getsockname()[1]


def dead_pid() -> int:
    """The PID of a process that has just exited (and been reaped): no process has it now."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid
