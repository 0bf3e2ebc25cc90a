"""Progress bars only for a person at a terminal: a TTY stderr gets them, a pipe or --json never."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
import threading

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="pty")


def _build(tmp_path, *extra, tty: bool) -> tuple[subprocess.CompletedProcess, str]:
    cmd = [sys.executable, "-m", "fleetdesk", "firmware", "build", "-o", str(tmp_path / "out"), *extra]
    if not tty:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120), ""
    master, slave = pty.openpty()
    chunks: list[bytes] = []

    def drain() -> None:  # read while the child writes: a full pty buffer would block it
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child side is closed and drained
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=slave, text=True, timeout=120,
                              env={**os.environ, "COLUMNS": "120", "TERM": "xterm"})
    finally:
        os.close(slave)
    reader.join(10)
    os.close(master)
    return proc, b"".join(chunks).decode(errors="replace")


def test_terminal_gets_a_bar_and_stdout_stays_clean(tmp_path):
    proc, screen = _build(tmp_path, tty=True)
    assert proc.returncode == 0, screen[-2000:]
    assert "bundle esp32" in screen and "built" in screen and "100%" in screen
    assert proc.stdout.startswith("bundle written to") and "\x1b[" not in proc.stdout


def test_piped_or_json_gets_no_bar(tmp_path):
    piped, _ = _build(tmp_path, tty=False)
    assert piped.returncode == 0 and "bundle esp32 " not in piped.stderr and "\x1b[" not in piped.stderr
    as_json, screen = _build(tmp_path, "--json", tty=True)
    assert as_json.returncode == 0 and "bundle esp32 " not in screen and "\x1b[" not in screen
