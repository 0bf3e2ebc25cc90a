"""A test outside tests/gui that uses Qt fails, naming what it uses and where it belongs
(tests/conftest.py's check: `./run test` runs tests/gui in a process of its own)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).parent


def _run_outside_tests_gui(tmp_path, source: str) -> subprocess.CompletedProcess:
    (tmp_path / "test_somewhere.py").write_text(source)
    env = dict(os.environ, PYTHONPATH=str(TESTS))  # load tests/conftest.py as a plugin for a file outside tests/gui
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "conftest", "-p", "no:cacheprovider", "-q", "-rE",
                           str(tmp_path / "test_somewhere.py")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)


def test_a_test_importing_pyside6_outside_tests_gui_fails_saying_where_it_goes(tmp_path):
    out = _run_outside_tests_gui(tmp_path, "def test_it():\n    from PySide6.QtCore import QTimer\n")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "uses Qt (PySide6.QtCore) but is not in tests/gui" in out.stdout, out.stdout


def test_a_test_using_qtbot_outside_tests_gui_fails(tmp_path):
    out = _run_outside_tests_gui(tmp_path, "def test_it(qtbot):\n    pass\n")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "qtbot" in out.stdout and "but is not in tests/gui" in out.stdout, out.stdout


def test_a_test_without_qt_passes(tmp_path):
    out = _run_outside_tests_gui(tmp_path, "def test_it():\n    assert 'PySide6' != 'import PySide6'\n")
    assert out.returncode == 0, out.stdout + out.stderr
