"""fleetdesk.virtual.runtime: start, console, reset restarts, stop."""

from __future__ import annotations

import time

import pytest

from fleetdesk.errors import BoardError
from fleetdesk.virtual.runtime import RESET_EXIT_CODE, launch_firmware


def test_missing_main_py_is_a_clear_error(tmp_path):
    with pytest.raises(BoardError, match="no main.py"):
        launch_firmware(tmp_path, mac="02:00:00:00:00:01", chip="esp32", console=lambda b: None)


@pytest.mark.parametrize("interpreter", ["micropython", "cpython"])
def test_machine_reset_restarts_and_other_exits_stop(tmp_path, interpreter):
    (tmp_path / "main.py").write_text(
        "import machine, os\n"
        "n = len(os.listdir('marks')) if 'marks' in os.listdir('.') else 0\n"
        "print('boot', n, machine.unique_id().hex() if hasattr(bytes, 'hex') else '')\n"
        "import os\n"
        "if 'marks' not in os.listdir('.'):\n    os.mkdir('marks')\n"
        "open('marks/%d' % n, 'w').close()\n"
        "if n < 2:\n    machine.reset()\n"
        "raise SystemExit(3)\n")
    out = bytearray()
    h = launch_firmware(tmp_path, mac="02:00:00:00:00:2a", chip="ESP32-S3", console=out.extend,
                        interpreter=interpreter)
    try:
        assert h.wait(30) == 3
        assert h.boots == 3 and not h.running
        text = out.decode()
        assert "boot 0" in text and "boot 2" in text and "machine.reset()" in text
        assert "02000000002a" in text
    finally:
        h.stop()
    assert RESET_EXIT_CODE == 75


def test_stop_ends_a_running_firmware(tmp_path):
    (tmp_path / "main.py").write_text("import time\nprint('up')\nwhile True:\n    time.sleep(1)\n")
    out = bytearray()
    h = launch_firmware(tmp_path, mac="020000000003", chip="esp32", console=out.extend)
    deadline = time.monotonic() + 15
    while b"up" not in out and time.monotonic() < deadline:
        time.sleep(0.05)
    assert h.running and h.pid
    h.stop(5)
    assert not h.running and h.pid is None
