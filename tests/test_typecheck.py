"""The type checks of `./run lint` (tools/lint.py) hold, and can fail: mypy on fleetdesk and
fleetdesk_gui (pyproject [tool.mypy]) and pyright on the firmware's on-board code against the
published MicroPython ESP32 stubs (firmware/pyrightconfig.json)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _lint():
    spec = importlib.util.spec_from_file_location("fleetdesk_lint", ROOT / "tools" / "lint.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_mypy_is_clean_on_fleetdesk_and_gui():
    lint = _lint()
    out = subprocess.run([str(BIN / "mypy"), "-p", "fleetdesk", "-p", "fleetdesk_gui"], cwd=ROOT,
                         env={**os.environ, "MYPYPATH": str(lint.gui_link())}, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "fleetdesk_gui" not in out.stdout, out.stdout  # nothing about gui means it was read, not missed
    assert "no issues found in" in out.stdout, out.stdout


def test_mypy_config_reports_a_type_error(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text('def port() -> int:\n    return "COM3"\n')
    out = subprocess.run([str(BIN / "mypy"), "--config-file", str(ROOT / "pyproject.toml"), "--no-incremental",
                          str(bad)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 1, out.stdout
    assert 'Incompatible return value type (got "str", expected "int")' in out.stdout, out.stdout


def test_firmware_board_check_names_what_a_board_lacks(tmp_path):
    """CPython's time.monotonic and a made-up machine function do not exist on an ESP32: the check
    says so, in the firmware's own configuration (with its paths pointed at a scratch folder)."""
    lint = _lint()
    lint.ensure_board_stubs()
    (tmp_path / "fd").mkdir()
    (tmp_path / "main.py").write_text("import machine\nimport time\n\n"
                                      "t = time.monotonic()\nmachine.Pin(2, machine.Pin.OUT).on()\n"
                                      "machine.deepsleep_forever()\n")
    text = (ROOT / "firmware" / "pyrightconfig.json").read_text()
    config = json.loads("\n".join(line for line in text.splitlines() if not line.lstrip().startswith("//")))
    config["typeshedPath"] = config["stubPath"] = str(lint.BOARD_STUBS)
    (tmp_path / "pyrightconfig.json").write_text(json.dumps(config))
    out = subprocess.run([str(BIN / "basedpyright"), "-p", str(tmp_path / "pyrightconfig.json")], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 1, out.stdout
    assert '"monotonic" is not a known attribute of module "time"' in out.stdout, out.stdout
    assert '"deepsleep_forever" is not a known attribute of module "machine"' in out.stdout, out.stdout
    assert "2 errors" in out.stdout, out.stdout  # Pin(2, Pin.OUT).on() exists on a board
