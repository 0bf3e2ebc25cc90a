"""tests/gui/conftest.py fails a Qt test that leaves a window or a running QTimer behind, naming
it (and where the timer started); ``@pytest.mark.qt_leaks(reason=...)`` opts one test out."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.gui

HERE = Path(__file__).parent


def _run(tmp_path, body: str) -> subprocess.CompletedProcess:
    (tmp_path / "test_somewhere.py").write_text("import pytest\nfrom PySide6.QtCore import QTimer\n"
                                                "from PySide6.QtWidgets import QWidget\nKEPT = []\n\n" + body)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), str(HERE.parent)]), QT_QPA_PLATFORM="offscreen")
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "conftest", "-p", "no:cacheprovider", "-q", "-rE",
                           str(tmp_path / "test_somewhere.py")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)


def test_a_window_left_open_fails_naming_it(tmp_path):
    out = _run(tmp_path, "def test_it(qapp):\n    w = QWidget()\n    w.setWindowTitle('Forgotten')\n"
                         "    w.show()\n    KEPT.append(w)\n")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "left Qt objects behind" in out.stdout and "widget QWidget 'Forgotten' (visible=True)" in out.stdout, out.stdout


def test_a_running_timer_fails_naming_where_it_started(tmp_path):
    out = _run(tmp_path, "def test_it(qapp):\n    t = QTimer()\n    t.start(1000)\n    KEPT.append(t)\n")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "running QTimer (interval 1000 ms, parent None) started at test_somewhere.py:8" in out.stdout, out.stdout


def test_closed_widgets_and_stopped_timers_pass(tmp_path):
    out = _run(tmp_path, "def test_it(qtbot):\n    w = QWidget()\n    qtbot.addWidget(w)\n    w.show()\n"
                         "    t = QTimer(w)\n    t.start(1000)\n")
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_opt_out_marker_needs_a_reason_and_skips_the_check(tmp_path):
    out = _run(tmp_path, "@pytest.mark.qt_leaks(reason='shows the opt-out')\ndef test_it(qapp):\n"
                         "    w = QWidget()\n    w.show()\n    KEPT.append(w)\n\n"
                         "@pytest.mark.qt_leaks\ndef test_no_reason(qapp):\n    pass\n")
    assert out.returncode == 1 and "1 passed" in out.stdout, out.stdout + out.stderr
    assert "needs reason=" in out.stdout, out.stdout
