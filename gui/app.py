"""`fleetdesk gui`: the QApplication, the qasync loop on the Qt thread, clean shutdown.

With a sandbox profile the app starts the sandbox as a child process (or attaches to a
running one for the same state dir) once the window shows, and stops the child on exit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import signal
import sys
import time
from pathlib import Path

from fleetdesk.config import Profiles
from fleetdesk.errors import ConfigError
from fleetdesk.paths import RESOURCES_DIR, sandbox_state_dir
from fleetdesk.sandbox.launcher import LauncherState, SandboxLauncher

# Set by bench/startup.py: print a marker when the window is on screen, then quit.
EXIT_WHEN_SHOWN_ENV = "FLEETDESK_EXIT_WHEN_SHOWN"
SHOWN_MARKER = "FLEETDESK_WINDOW_SHOWN"
# `--port-base` for the sandbox the app starts (0 = free ports; tests use it).
PORT_BASE_ENV = "FLEETDESK_SANDBOX_PORT_BASE"


def load_stylesheet() -> str:
    """The app style sheet (resources/styles/app.qss), or "" if missing."""
    try:
        return (RESOURCES_DIR / "styles" / "app.qss").read_text()
    except OSError:
        return ""


class CloudController:
    """Keeps the cloud side in step with the active profile (sandbox child or AWS).

    Args:
        ctx: the AppContext whose ``cloud`` state this drives.
        state_dir_override: ``--state-dir`` from the command line, if any.
        connect: also open the app's CloudSession once the cloud is up.
        port_base: ``--port-base`` for a sandbox we start (0 = free ports; None = its default).
    """

    def __init__(self, ctx, state_dir_override: str | None = None, connect: bool = True,
                 port_base: int | None = None) -> None:
        self.ctx = ctx
        self.port_base = port_base
        self.state_dir_override = state_dir_override
        self.connect = connect
        self.launcher: SandboxLauncher | None = None
        self.session = None
        self._lock = asyncio.Lock()
        ctx.profile_changed.connect(lambda _p: asyncio.ensure_future(self.apply()))

    def state_dir(self) -> Path:
        """The sandbox state dir for the active profile."""
        p = self.ctx.profile
        return Path(self.state_dir_override or p.state_dir or sandbox_state_dir())

    async def apply(self) -> None:
        """Start/attach the sandbox for a sandbox profile; stop ours for an AWS one."""
        async with self._lock:
            p = self.ctx.profile
            if p.kind == "sandbox":
                want = self.state_dir()
                if self.launcher and self.launcher.state_dir == want and self.launcher.state.phase == "running":
                    return
                await self._stop()
                self.launcher = SandboxLauncher(want, port_base=self.port_base, on_state=self._on_state)
                state = await self.launcher.start()
                if state.phase == "running" and self.connect:
                    await self._start_session(dataclasses.replace(p, state_dir=str(want)))
            else:
                await self._stop()
                self.ctx.set_cloud_state(
                    LauncherState("running", {"mqtt_host": p.endpoint, "mqtt_port": 443, "region": p.region})
                )
                if self.connect:
                    await self._start_session(p)

    async def _start_session(self, profile) -> None:
        """Connect the app's CloudSession; a failure shows in the status bar, never raises."""
        from fleetdesk.cloud.connection import State, StateEvent
        from fleetdesk.cloud.session import CloudSession
        from fleetdesk.errors import FleetdeskError

        self.ctx.live.connection.emit(StateEvent(State.CONNECTING))
        session = None
        try:
            session = CloudSession(profile)
            await session.start()
        except (FleetdeskError, OSError) as exc:
            if session is not None:
                with contextlib.suppress(Exception):
                    await session.stop()
            self.ctx.live.connection.emit(StateEvent(State.FAILED, reason=getattr(exc, "message", str(exc))))
            return
        self.session = session
        self.ctx.live.attach(session)
        with contextlib.suppress(Exception):
            await session.refresh_groups()

    def _on_state(self, state: LauncherState) -> None:
        if state.phase == "running" and not state.endpoint.get("state_dir") and self.launcher:
            state = LauncherState(
                state.phase, {**state.endpoint, "state_dir": str(self.launcher.state_dir)}, state.reason, state.attached
            )
        self.ctx.set_cloud_state(state)

    async def _stop(self) -> None:
        if self.session is not None:
            session, self.session = self.session, None
            self.ctx.live.detach()
            with contextlib.suppress(Exception):
                await session.stop()
        if self.launcher is not None:
            launcher, self.launcher = self.launcher, None
            await launcher.stop()

    async def shutdown(self) -> None:
        """Stop the sandbox child we started (an attached one keeps running)."""
        async with self._lock:
            await self._stop()


def build_window(profiles: Profiles, settings, pages=None):
    """Create the AppContext and MainWindow (no sandbox, no loop). Used by tests too."""
    from gui import bridge
    from gui.context import AppContext
    from gui.main_window import MainWindow

    bridge.instance()  # the bridge lives on the Qt thread: create it here, not in a callback
    ctx = AppContext(profiles, settings)
    window = MainWindow(ctx, pages)
    # Scoped, not window-wide: a style sheet on the window routes every table cell of every
    # page through QStyleSheetStyle (~40% slower painting of the fleet table).
    qss = load_stylesheet()
    window.sidebar.setStyleSheet(qss)
    window.statusBar().setStyleSheet(qss)
    return ctx, window


def run_app(args: argparse.Namespace) -> int:
    """Run the desktop app until the main window closes. Returns the exit code."""
    t0 = time.perf_counter()
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY") and sys.platform.startswith("linux"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    import qasync
    from PySide6.QtCore import QSettings, QTimer
    from PySide6.QtWidgets import QApplication

    from gui import bridge

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setOrganizationName("fleetdesk")
    app.setApplicationName("fleetdesk")
    app.setApplicationDisplayName("Fleetdesk")
    app.setQuitOnLastWindowClosed(False)

    load_error = None
    try:
        profiles = Profiles.load()
    except ConfigError as exc:
        profiles, load_error = Profiles(), exc
    profile_name = getattr(args, "profile", None)
    if profile_name:
        if profile_name not in profiles.items:
            print(f"fleetdesk: no profile named {profile_name!r} (known: {', '.join(profiles.items)})", file=sys.stderr)
            return 2
        profiles.active = profile_name

    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    bridge.set_loop(loop)
    bridge.instance()
    ctx, window = build_window(profiles, QSettings())
    port_base = os.environ.get(PORT_BASE_ENV)
    controller = CloudController(ctx, getattr(args, "state_dir", None),
                                 port_base=int(port_base) if port_base and port_base.isdigit() else None)
    exit_when_shown = bool(os.environ.get(EXIT_WHEN_SHOWN_ENV))

    # SIGTERM/SIGINT close the window like the user would, so the sandbox child is stopped.
    # Python only sees signals when it runs: a idle 200 ms timer gives it the chance.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: QTimer.singleShot(0, window.close))
    wake = QTimer()
    wake.timeout.connect(lambda: None)
    wake.start(200)

    async def main() -> None:
        closed = asyncio.Event()
        window.closed.connect(closed.set)
        window.show()
        if load_error is not None:
            window.statusBar().showMessage(str(load_error), 15000)
        if exit_when_shown:
            await asyncio.sleep(0)
            app.processEvents()
            print(f"{SHOWN_MARKER} {time.perf_counter() - t0:.4f}", flush=True)
            window.close()
        else:
            QTimer.singleShot(0, lambda: asyncio.ensure_future(controller.apply()))
        await closed.wait()
        await controller.shutdown()

    try:
        with loop:
            loop.run_until_complete(main())
    finally:
        bridge.set_loop(None)
    return 0
