"""`fleetdesk boards virtual` without the MicroPython unix port (issue 17 §3): it refuses before
starting any board, names what is missing and prints the install line, exit code 1."""

from __future__ import annotations

import os
import subprocess
import sys


def test_boards_virtual_refuses_without_the_runtime(tmp_path):
    env = dict(os.environ, FLEETDESK_MICROPYTHON=str(tmp_path / "no-such-micropython"))
    state = tmp_path / "boards"
    p = subprocess.run([sys.executable, "-m", "fleetdesk", "boards", "virtual", "--count", "2",
                        "--state-dir", str(state)], env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 1, (p.stdout, p.stderr)
    assert "the MicroPython unix port is not installed" in p.stderr
    assert "pip install 'fleetdesk[virtual]'" in p.stderr
    assert "Traceback" not in p.stderr
    assert p.stdout == ""  # no board announced (no port a station could try to flash)
    assert not any(state.glob("**/*.bin"))  # no flash image was made for a board that cannot boot
