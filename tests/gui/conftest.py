"""GUI test fixtures: offscreen Qt, a private QSettings file, an in-memory keyring,
and a qasync loop to run asyncio scenarios on the Qt thread."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from ble_board import ble_registry, fresh_board  # noqa: F401  (fixtures of the BLE Setup page tests)
from board_rig import bundle_dir, rig  # noqa: F401  (fixtures of the Stations page tests)
from gui_testutil import until  # noqa: F401  (re-exported for older imports)
from window_grab import real_window_grab

SCREENSHOT_DIR_ENV = "FLEETDESK_SCREENSHOTS"  # set to a dir to keep the PNGs (docs/screenshots)


class MemoryKeyring:
    """A keyring backend that keeps secrets in a dict (the OS keyring is not there in CI)."""

    priority = 1

    def __init__(self):
        self.store: dict[tuple[str, str], str] = {}

    def get_password(self, service, username):
        return self.store.get((service, username))

    def set_password(self, service, username, password):
        self.store[(service, username)] = password

    def delete_password(self, service, username):
        self.store.pop((service, username), None)


@pytest.fixture(autouse=True)
def _collect_qt_garbage(request):
    """Delete finished tests' widgets now, outside Qt's event processing.

    pyqtgraph items live in reference cycles; left to Python's cyclic GC they may be freed in
    the middle of a later test's Qt event loop, which can crash Qt.
    """
    yield
    import gc

    from PySide6.QtWidgets import QApplication

    app = QApplication.instance()
    if app is not None:
        app.processEvents()
    gc.collect()
    if app is not None:
        app.processEvents()


LEAK_MARK = "qt_leaks"  # @pytest.mark.qt_leaks(reason="what stays behind and why") opts a test out


def pytest_configure(config):
    config.addinivalue_line("markers", f"{LEAK_MARK}(reason): the test leaves Qt widgets or timers behind; "
                                       "skips the leak check (reason required)")


def _cpp_address(obj) -> int:
    import shiboken6

    return shiboken6.getCppPointer(obj)[0]


def _where_started() -> str:
    """The innermost frame of the project (gui/, fleetdesk/, tests/) that started a timer."""
    import traceback

    for frame in reversed(traceback.extract_stack()[:-2]):
        if "site-packages" not in frame.filename and not frame.filename.endswith("conftest.py"):
            return f"{Path(frame.filename).name}:{frame.lineno} ({frame.name})"
    return "?"


def _drain_bridge(qapp, timeout_s: float = 30.0) -> None:
    """Run what the test's threads already queued on the app-wide bridge.

    The bridge drains in 50 ms slices and re-arms its timer while callables wait; on a busy
    machine two processEvents() may not empty it, and stopping that timer as a "leak" would
    leave the queue (the finished test's callbacks) to run inside the next test.
    """
    import time

    from fleetdesk_gui import bridge

    b = bridge._instance
    deadline = time.monotonic() + timeout_s
    # idle = nothing queued and no drain armed: a worker thread that ended with the test may
    # still have a wake-up in flight (queued signal -> timer), which must run here, not later
    while b is not None and (b.pending() or b._timer.isActive()):
        assert time.monotonic() < deadline, (
            f"the bridge still holds {b.pending()} callbacks after {timeout_s:.0f} s (a thread the test "
            f"started keeps posting: {[getattr(fn, '__qualname__', fn) for fn, _ in list(b._queue)[:3]]})")
        qapp.processEvents()


def _bridge_timer():
    from fleetdesk_gui import bridge

    return bridge._instance._timer if bridge._instance is not None else None


@pytest.fixture(autouse=True)
def _no_leaked_widgets_or_timers(request, qapp, monkeypatch):
    """Fail a test that leaves top-level widgets or running QTimers behind (as napari's conftest does).

    A left-over window keeps receiving events (and bridge callbacks) in later tests; a running
    timer fires into a later test's widgets. Runs after every other fixture's teardown and after
    pytest-qt closed the qtbot widgets: what still exists once deferred deletes ran is a leak.
    Opt out with ``@pytest.mark.qt_leaks(reason="...")`` naming why.
    """
    import gc
    import weakref

    from PySide6.QtCore import QEvent, QTimer

    mark = request.node.get_closest_marker(LEAK_MARK)
    if mark is not None:
        assert mark.kwargs.get("reason") or mark.args, f"@pytest.mark.{LEAK_MARK} needs reason='why it leaks'"
        yield
        return
    before = {_cpp_address(w) for w in qapp.topLevelWidgets()}
    started: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
    base_start = QTimer.start

    def start(self, *args):
        started[self] = _where_started()
        return base_start(self, *args)

    monkeypatch.setattr(QTimer, "start", start)
    yield
    monkeypatch.undo()  # the check below must not record timers itself
    _drain_bridge(qapp)
    for _ in range(2):
        qapp.sendPostedEvents(None, QEvent.Type.DeferredDelete)
        gc.collect()
        qapp.processEvents()
    _drain_bridge(qapp)  # what those events woke up (a late post from an ending thread) runs now
    # windows with a parent (menus, dialogs) go with it: the parentless ones are what nothing will delete
    widgets = [w for w in qapp.topLevelWidgets() if w.parent() is None and _cpp_address(w) not in before]
    timers = []
    app_bridge = _bridge_timer()  # the app-wide bridge's own drain timer is not the test's
    for timer, where in list(started.items()):
        if timer is app_bridge:
            continue
        try:
            if timer.isActive():
                timers.append((timer, where))
        except RuntimeError:  # its C++ object is gone: deleted with its owner
            pass
    problems = [f"widget {type(w).__name__} {w.objectName() or w.windowTitle()!r} (visible={w.isVisible()})"
                for w in widgets]
    problems += [f"running QTimer (interval {t.interval()} ms, parent "
                 f"{type(t.parent()).__name__ if t.parent() is not None else None}) started at {where}"
                 for t, where in timers]
    for timer, _ in timers:
        timer.stop()  # so it cannot fire into the next test
    for w in widgets:
        w.close()
        w.deleteLater()
    qapp.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    if problems:
        pytest.fail("the test left Qt objects behind (close/delete them in the test or its fixture, or mark it "
                    f"@pytest.mark.{LEAK_MARK}(reason=...)):\n  " + "\n  ".join(problems), pytrace=False)


@pytest.fixture
def memory_keyring(monkeypatch):
    import keyring
    from keyring.backend import KeyringBackend

    class _Backend(MemoryKeyring, KeyringBackend):
        pass

    backend = _Backend()
    previous = keyring.get_keyring()
    keyring.set_keyring(backend)
    yield backend
    keyring.set_keyring(previous)


@pytest.fixture
def qsettings(tmp_path):
    from PySide6.QtCore import QSettings

    return QSettings(str(tmp_path / "fleetdesk.ini"), QSettings.IniFormat)


@pytest.fixture
def qloop(qapp):
    """A qasync loop on the Qt thread: ``qloop.run_until_complete(coro)`` runs Qt + asyncio."""
    import qasync

    from fleetdesk_gui import bridge

    qapp.setQuitOnLastWindowClosed(False)
    loop = qasync.QEventLoop(qapp)
    asyncio.set_event_loop(loop)
    bridge.set_loop(loop)
    bridge.instance()  # created on the Qt thread, before any callback needs it
    yield loop
    bridge.set_loop(None)
    loop.close()
    asyncio.set_event_loop(None)


@pytest.fixture
def shot(tmp_path):
    """Save a widget screenshot; returns the PNG path (kept in $FLEETDESK_SCREENSHOTS if set)."""

    def save(widget, name: str):
        out_dir = os.environ.get(SCREENSHOT_DIR_ENV) or str(tmp_path)
        os.makedirs(out_dir, exist_ok=True)
        path = os.path.join(out_dir, f"{name}.png")
        assert real_window_grab(widget).save(path), f"could not save {path}"
        return path

    return save


@pytest.fixture
def app_window(qapp, qsettings, qloop):
    """A MainWindow with its AppContext (no sandbox started; tests attach sessions)."""
    from fleetdesk.config import Profiles
    from fleetdesk_gui.app import build_window

    ctx, win = build_window(Profiles(), qsettings)
    win.resize(1280, 800)
    win.show()
    yield ctx, win
    ctx.live.detach()
    win.close()
    qapp.processEvents()  # drain queued bridge callbacks while the widgets still exist
    win.deleteLater()
    qapp.processEvents()


@pytest.fixture
def cloud_session(sandbox, qloop, request, tmp_path):
    """A started CloudSession on the session sandbox (a profile name unique to the test)."""
    from fleetdesk.cloud.session import CloudSession
    from fleetdesk.config import Profile
    from fleetdesk.store.telemetry import TelemetryStore

    name = "gui-" + request.node.name.replace("[", "-").replace("]", "")[:40]
    profile = Profile(name=name, kind="sandbox", state_dir=sandbox.state_dir)
    session = CloudSession(profile, store=TelemetryStore(tmp_path / "telemetry.sqlite3"))
    qloop.run_until_complete(asyncio.wait_for(session.start(), 60))
    yield session
    qloop.run_until_complete(asyncio.wait_for(session.stop(), 60))
    qloop.run_until_complete(asyncio.sleep(0.1))  # let the last callbacks run while the loop lives


@pytest.fixture
def sim_fleet(sandbox, tmp_path, request):
    """``start(count, prefix, rate)`` provisions simulated devices and runs them; stopped after."""
    from fleetdesk.virtual.fleet_sim import FleetRunner, provision_fleet

    runners = []

    def start(count: int, prefix: str, rate: float = 2.0):
        specs = provision_fleet(sandbox, count, tmp_path / f"fleet-{prefix}", prefix=prefix)
        runner = FleetRunner(specs, rate=rate, processes=1, ramp=0.0, log_dir=tmp_path / f"logs-{prefix}")
        runner.start()
        runners.append(runner)
        return specs, runner

    yield start
    for r in runners:
        r.stop()
