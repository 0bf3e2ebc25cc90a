"""Shared test setup. Area fixtures live in tests/<area>/conftest.py.

Every test gets private app dirs (FLEETDESK_DATA_DIR, FLEETDESK_CONFIG_DIR) so nothing
touches the developer's real profiles, production DB or sandbox state.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

if not os.environ.get("DISPLAY") and sys.platform.startswith("linux"):
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

# What a developer's or CI machine's environment may carry that must not steer a test:
# AWS's credential/profile/region chain (a missing AWS_PROFILE breaks every boto3 client), the
# user's dirs (tests would write ~/.config/fleetdesk), and who the user is.
_SCRUBBED_PREFIXES = ("AWS_", "FLEETDESK_", "BOTO_")
# where this machine's broker is, and where a run keeps its screenshots (README: retaking them): not settings
_KEPT = {"FLEETDESK_MOSQUITTO", "FLEETDESK_MOSQUITTO_DYNSEC", "FLEETDESK_SCREENSHOTS", "FLEETDESK_SANDBOX_STALL_S"}
_REAL_HOME = os.environ.get("HOME", "")
_home_before: dict[str, int] | None = None
_base: Path | None = None  # this process's private HOME/XDG/TMPDIR root


def _home_snapshot(home: str) -> dict[str, int]:
    """mtime_ns of $HOME and of everything two levels below it: a write there changes one of them."""
    out: dict[str, int] = {}
    root = Path(home)
    if not home or not root.is_dir():
        return out
    for path in [root, *root.glob("*"), *root.glob("*/*")]:
        try:
            out[str(path)] = path.lstat().st_mtime_ns
        except OSError:
            pass
    return out


def pytest_configure(config):
    """Give the whole test process (and every child it starts) a private HOME, XDG dirs and TMPDIR."""
    global _home_before, _base
    if os.environ.get("FLEETDESK_TEST_ISOLATED") == "1":  # a nested pytest (xdist worker, subprocess)
        return
    base = _base = Path(tempfile.mkdtemp(prefix="fdt-"))
    for key in [k for k in os.environ if k.startswith(_SCRUBBED_PREFIXES) and k not in _KEPT]:
        del os.environ[key]
    dirs = {
        "HOME": base / "home",
        "XDG_CONFIG_HOME": base / "home" / ".config",
        "XDG_DATA_HOME": base / "home" / ".local" / "share",
        "XDG_CACHE_HOME": base / "home" / ".cache",
        "XDG_STATE_HOME": base / "home" / ".local" / "state",
        "XDG_RUNTIME_DIR": base / "run",
        "TMPDIR": base / "tmp",
    }
    for key, path in dirs.items():
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(0o700)
        os.environ[key] = str(path)
    # pip (the installed-wheel tests) may keep using the machine's download cache: read-mostly, not $HOME.
    os.environ.setdefault("PIP_CACHE_DIR", str(Path(_REAL_HOME or base) / ".cache" / "pip"))
    os.environ["FLEETDESK_TEST_ISOLATED"] = "1"
    tempfile.tempdir = None  # forget the cached /tmp: tmp_path and every child use TMPDIR from here on
    if os.environ.get("CI") or os.environ.get("FLEETDESK_TEST_HOME_CHECK") == "1":
        _home_before = _home_snapshot(_REAL_HOME)


def pytest_sessionfinish(session, exitstatus):
    """In CI, fail the run if anything wrote into the real $HOME (a test escaped its private one)."""
    session.config._fd_exitstatus = exitstatus
    if _home_before is None:
        return
    after = _home_snapshot(_REAL_HOME)
    cache = str(Path(_REAL_HOME) / ".cache")
    changed = sorted(p for p in set(after) | set(_home_before)
                     if after.get(p) != _home_before.get(p) and not p.startswith(cache))
    if changed:
        print(f"\nthe test run wrote into the real HOME ({_REAL_HOME}): " + ", ".join(changed[:10]), file=sys.stderr)
        session.exitstatus = session.config._fd_exitstatus = 1


def pytest_unconfigure(config):
    """Remove the process's private dirs after a passing run (a run writes up to ~2 GB there:
    sandboxes, boards, PostgreSQL, wheels); a failing run keeps them and says where."""
    if _base is None or not _base.is_dir():
        return
    failed = getattr(config, "_fd_exitstatus", 0) not in (0, 5)
    if failed or os.environ.get("FLEETDESK_KEEP_TEST_DIRS") == "1":
        print(f"\nthe test run's files are kept in {_base}", file=sys.stderr)
        return
    shutil.rmtree(_base, ignore_errors=True)


_GUI_TESTS = Path(__file__).parent / "gui"
_QT_MODULES = {"PySide6", "shiboken6", "pytestqt", "fleetdesk_gui", "qasync", "pyqtgraph"}
_QT_FIXTURES = {"qtbot", "qapp", "qtmodeltester", "qtlog"}
_qt_imports_of: dict[Path, list[str]] = {}


def _qt_imports(path: Path) -> list[str]:
    """The Qt (or GUI package) modules a test file imports anywhere in it (read once per file)."""
    if path not in _qt_imports_of:
        import ast

        names = []
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names += [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.append(node.module)
        _qt_imports_of[path] = sorted({n for n in names if n.split(".")[0] in _QT_MODULES})
    return _qt_imports_of[path]


@pytest.fixture(autouse=True)
def _qt_tests_live_in_tests_gui(request):
    """A Qt test outside tests/gui would run in the non-Qt process of `./run test`: fail it, saying where it goes."""
    path = Path(request.node.path)
    if _GUI_TESTS in path.parents or not path.name.startswith("test_"):
        return
    qt = _qt_imports(path) + sorted(_QT_FIXTURES & set(request.fixturenames))
    if qt:
        pytest.fail(f"{path.name} uses Qt ({', '.join(qt)}) but is not in tests/gui: `git mv` it there "
                    "(Qt tests run in their own process, with tests/gui/conftest.py's fixtures)", pytrace=False)


_PER_TEST_HOME = ("HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME")


@pytest.fixture(autouse=True)
def _private_app_dirs(tmp_path_factory, monkeypatch):
    """Every test gets its own HOME and XDG dirs (what one test writes there no later test sees),
    its own Fleetdesk data/config/sandbox dirs, and no AWS_*/BOTO_* setting left by another test.

    (TMPDIR and XDG_RUNTIME_DIR stay the process's private ones: unix socket paths under them must
    stay short.)"""
    base = tmp_path_factory.mktemp("appdirs")
    home = base / "home"
    for key, path in zip(_PER_TEST_HOME, (home, home / ".config", home / ".local" / "share",
                                          home / ".cache", home / ".local" / "state")):
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        monkeypatch.setenv(key, str(path))
    for key in [k for k in os.environ if k.startswith(("AWS_", "BOTO_"))]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("FLEETDESK_DATA_DIR", str(base / "data"))
    monkeypatch.setenv("FLEETDESK_CONFIG_DIR", str(base / "config"))
    monkeypatch.setenv("FLEETDESK_SANDBOX_DIR", str(base / "sandbox"))
    yield


@pytest.fixture(scope="session")
def pg_server():
    """A throwaway PostgreSQL server (tests/pg_server.py) for the whole session; stopped at the end.
    ``pg_server.create_db()`` gives a fresh database's URL."""
    from pg_server import PgServer

    server = PgServer()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory):
    """A running sandbox (SandboxInfo) shared by the whole test session; stopped at the end."""
    from fleetdesk.sandbox.child import start_sandbox, stop_sandbox

    state_dir = tmp_path_factory.mktemp("sandbox-session") / "state"
    proc, info = start_sandbox(state_dir)
    try:
        yield info
    finally:
        stop_sandbox(proc)
