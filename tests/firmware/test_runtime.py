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


HEAP_PROBE = (
    "import gc\n"
    "gc.collect()\n"
    "print('free', gc.mem_free())\n"
    "try:\n"
    "    b = bytearray(%d)\n"
    "    print('fits')\n"
    "except MemoryError:\n"
    "    print('MemoryError')\n"
)


@pytest.mark.parametrize("chip, psram, want", [
    ("esp32", False, 112), ("esp32s3", False, 128), ("esp32c3", False, 128), ("esp8266", False, 38),
    ("esp32", True, 4096),
])
def test_the_firmware_gets_the_chips_stock_gc_heap(tmp_path, chip, psram, want):
    """What main.py has free is the chip's budget (after the hal shims, which are C on a chip):
    a 120 KB buffer does not fit a stock ESP32, it does on a PSRAM board."""
    (tmp_path / "main.py").write_text(HEAP_PROBE % (120 * 1024))
    out = bytearray()
    h = launch_firmware(tmp_path, mac="020000000004", chip=chip, console=out.extend, psram=psram)
    try:
        assert h.wait(30) == 0, out.decode()
    finally:
        h.stop()
    assert h.heap == want * 1024
    text = out.decode()
    free = int(text.split("free ")[1].split()[0])
    from fleetdesk.virtual.runtime import word_inflation

    scale = word_inflation()
    # within the port's scale of the budget (minus what the prelude's imports left behind)
    assert 0.9 * want * 1024 * scale < free <= want * 1024 * scale + 4096, text
    assert ("fits" in text) == psram, text


def test_psram_on_a_chip_without_a_psram_build_is_refused(tmp_path):
    (tmp_path / "main.py").write_text("print(1)\n")
    with pytest.raises(BoardError, match="no PSRAM"):
        launch_firmware(tmp_path, mac="020000000005", chip="esp32c3", console=lambda b: None, psram=True)


def test_cpython_interpreter_in_the_standalone_app_is_refused_with_the_way_out(tmp_path, monkeypatch):
    """A frozen app's sys.executable is the app itself: it must not be started as 'python main.py'."""
    (tmp_path / "main.py").write_text("print(1)\n")
    monkeypatch.setattr("sys.frozen", True, raising=False)
    with pytest.raises(BoardError, match="standalone app") as info:
        launch_firmware(tmp_path, mac="020000000006", chip="esp32", console=lambda b: None, interpreter="cpython")
    assert "--interpreter micropython" in info.value.advice
    monkeypatch.delattr("sys.frozen")
    out = bytearray()
    h = launch_firmware(tmp_path, mac="020000000006", chip="esp32", console=out.extend, interpreter="cpython")
    assert h.wait(30) == 0 and b"1" in out


def test_a_64_bit_unix_port_gets_the_scaled_budget_and_a_32_bit_one_the_chips_own(tmp_path):
    import subprocess

    from fleetdesk.virtual.runtime import WORD_INFLATION, micropython_binary, word_inflation

    binary = micropython_binary()
    bits64 = subprocess.run([binary, "-c", "import sys; print(sys.maxsize > 2**32)"], capture_output=True,
                            text=True, timeout=30).stdout.strip() == "True"
    assert word_inflation(binary) == (WORD_INFLATION if bits64 else 1.0)
    elf32 = tmp_path / "micropython-i386"
    elf32.write_bytes(b"\x7fELF\x01\x01\x01" + bytes(57))
    assert word_inflation(str(elf32)) == 1.0
