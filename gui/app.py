"""`fleetdesk gui`: the QApplication, the qasync loop on the Qt thread, clean shutdown.

With a sandbox profile the app starts the sandbox as a child process (or attaches to a
running one for the same state dir) once the window shows, and stops the child on exit.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time
from pathlib import Path
from typing import cast

from fleetdesk.config import Profiles
from fleetdesk.errors import ConfigError
from fleetdesk.paths import RESOURCES_DIR

# Set by bench/startup.py: print a marker when the window is on screen, then quit.
EXIT_WHEN_SHOWN_ENV = "FLEETDESK_EXIT_WHEN_SHOWN"
SHOWN_MARKER = "FLEETDESK_WINDOW_SHOWN"
# `--port-base` for the sandbox the app starts (0 = free ports; tests use it).
PORT_BASE_ENV = "FLEETDESK_SANDBOX_PORT_BASE"


def load_stylesheet() -> str:
    """The app style sheet (resources/styles/app.qss); "" and a warning on stderr if missing."""
    path = RESOURCES_DIR / "styles" / "app.qss"
    try:
        return path.read_text()
    except OSError as exc:
        print(f"fleetdesk: the style sheet {path} is missing ({exc.strerror}): reinstall fleetdesk", file=sys.stderr)
        return ""


ICON_PATH = RESOURCES_DIR / "icons" / "fleetdesk.png"
DESKTOP_FILE_NAME = "fleetdesk"  # resources/desktop/fleetdesk.desktop: the launcher's id, for the task bar


class CloudController:
    """The GUI's adapter over :class:`fleetdesk.cloud.runtime.CloudRuntime`: follows the
    context's active profile and feeds the runtime's reports into the context.

    The runtime's callbacks run on the asyncio loop, which qasync runs on the Qt thread, so
    :func:`fleetdesk_gui.bridge.on_qt` delivers them at once (and would queue them from any other thread).

    Args:
        ctx: the AppContext whose ``cloud`` state this drives.
        state_dir_override: ``--state-dir`` from the command line, if any.
        connect: also open the app's CloudSession once the cloud is up.
        port_base: ``--port-base`` for a sandbox we start (0 = free ports; None = its default).
    """

    def __init__(self, ctx, state_dir_override: str | None = None, connect: bool = True,
                 port_base: int | None = None) -> None:
        from fleetdesk.cloud.runtime import CloudRuntime
        from fleetdesk_gui import bridge

        self.ctx = ctx
        self.runtime = CloudRuntime(state_dir_override, connect, port_base,
                                    on_state=bridge.on_qt(ctx.set_cloud_state),
                                    on_connection=bridge.on_qt(ctx.live.connection.emit),
                                    on_session=bridge.on_qt(self._session))
        ctx.profile_changed.connect(lambda _p: asyncio.ensure_future(self.apply()))

    @property
    def launcher(self):
        """The sandbox child (or attached sandbox) the runtime holds, if any."""
        return self.runtime.service

    @property
    def session(self):
        return self.runtime.session

    def state_dir(self) -> Path | None:
        """The sandbox state dir for the active profile."""
        return self.runtime.state_dir(self.ctx.profile)

    def _session(self, session) -> None:
        if session is None:
            self.ctx.live.detach()
        else:
            self.ctx.live.attach(session)

    async def apply(self) -> None:
        """Start/attach the sandbox for a sandbox profile; stop ours for an AWS one."""
        await self.runtime.apply(self.ctx.profile)

    async def shutdown(self) -> None:
        """Stop the sandbox child we started (an attached one keeps running)."""
        await self.runtime.shutdown()


def build_window(profiles: Profiles, settings, pages=None):
    """Create the AppContext and MainWindow (no sandbox, no loop). Used by tests too."""
    from fleetdesk_gui import bridge
    from fleetdesk_gui.context import AppContext
    from fleetdesk_gui.main_window import MainWindow

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

    from fleetdesk_gui import bridge

    # instance() is typed QCoreApplication; in this process it is only ever the QApplication made here
    app = cast(QApplication, QApplication.instance() or QApplication(sys.argv[:1]))
    app.setOrganizationName("fleetdesk")
    app.setApplicationName("fleetdesk")
    app.setApplicationDisplayName("Fleetdesk")
    app.setDesktopFileName(DESKTOP_FILE_NAME)
    if ICON_PATH.is_file():
        from PySide6.QtGui import QIcon

        app.setWindowIcon(QIcon(str(ICON_PATH)))
    else:
        print(f"fleetdesk: the app icon {ICON_PATH} is missing: reinstall fleetdesk", file=sys.stderr)
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
