"""`fleetdesk flash` stopped by SIGINT or SIGTERM (a script's timeout, systemd, Ctrl-C): the
flash is cancelled at its next block the way STOP does it, the result line is still printed
(--json too), the run's row is closed, its temp dir removed, and the exit code says which
signal (130 / 143)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from fleetdesk.process import stop_child
from fleetdesk.store.production import ProductionDB

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


@pytest.fixture
def throttled_board(tmp_path):
    """One virtual board writing at line rate (a 4 MB flash takes long enough to interrupt)."""
    proc = subprocess.Popen([sys.executable, "-m", "fleetdesk", "boards", "virtual", "--count", "1", "--json",
                             "--state-dir", str(tmp_path / "vb")],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        yield json.loads(proc.stdout.readline())[0]["port"]
    finally:
        stop_child(proc)


def _wait_for(what: str, cond, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = cond()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_cancels_the_flash_cleanly(sig, throttled_board, bundle_dir, tmp_path):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "fleetdesk", "flash", throttled_board, "--bundle", str(bundle_dir),
                             "--no-wait-online", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "TMPDIR": str(tmp)})
    # the flash job is under way once its temp dir exists
    _wait_for("the flash's temp dir", lambda: list(tmp.glob("fd-flash-*")))
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig, (proc.returncode, err[-2000:])
    (doc,) = [json.loads(line) for line in out.splitlines()]
    assert doc["port"] == throttled_board and doc["result"] == "FAIL" and "cancel" in doc["error"].lower(), doc
    assert "Traceback" not in err, err[-2000:]
    assert not list(tmp.glob("fd-flash-*")), "the flash's temp dir was left behind"
    (row,) = ProductionDB().attempts()
    assert row["result"] == "FAIL"
