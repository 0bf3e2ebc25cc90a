"""The main window: a sidebar of pages, a stack, and a status bar. Nothing else.

Adding a page is ONE line in :data:`PAGES`: ``PageEntry("Title", "fleetdesk_gui.pages.module")``.
The module exposes ``create_page(ctx: fleetdesk_gui.context.AppContext) -> QWidget``. A module that
does not exist yet is skipped (no placeholder pages), and pages are created the first time
they are shown, so a heavy page (charts) costs nothing at startup.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass

from PySide6.QtCore import QByteArray, QSize, Qt, Signal
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QStackedWidget,
    QWidget,
)

from fleetdesk.cloud.backend import LauncherState, get_cloud_backend
from fleetdesk_gui.context import AppContext

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PageEntry:
    """One sidebar entry: its title and the module whose ``create_page(ctx)`` builds it."""

    title: str
    module: str


# The page registry, in sidebar order. Every module must exist (a test imports each).
PAGES: list[PageEntry] = [
    PageEntry("Stations", "fleetdesk_gui.pages.stations"),
    PageEntry("Line", "fleetdesk_gui.pages.line"),
    PageEntry("BLE Setup", "fleetdesk_gui.pages.ble_setup"),
    PageEntry("Fleet", "fleetdesk_gui.pages.fleet"),
    PageEntry("Device", "fleetdesk_gui.pages.device"),
    PageEntry("Jobs", "fleetdesk_gui.pages.jobs"),
    PageEntry("Settings", "fleetdesk_gui.pages.settings"),
]




def status_state(ctx: AppContext):
    """``(profile, LauncherState)`` the status bar describes.

    Normally the active profile and ``ctx.cloud``. A session attached without the app's
    launcher (a sandbox already running, a session handed in by a tool or a test) is what the
    pages show, so the status bar describes that session's profile, never "stopped".
    """
    session = ctx.live.session
    state: LauncherState = ctx.cloud
    if session is not None and state.phase == "stopped":
        profile = getattr(session, "profile", None) or ctx.profile
        return profile, get_cloud_backend(profile).attached_state()
    return ctx.profile, state


def status_text(ctx: AppContext) -> str:
    """The status-bar line for the profile in use and its live state."""
    profile, state = status_state(ctx)
    return f"Profile {profile.name} · {get_cloud_backend(profile).describe(state)}"


DEFAULT_SIZE = QSize(1200, 780)


def default_size(available: QSize | None) -> QSize:
    """The first window size: 1200×780, or what the screen has room for (a 1366×768 laptop's
    work area is about 1366×728: the status bar must stay on screen)."""
    if available is None or available.isEmpty():
        return DEFAULT_SIZE
    return QSize(min(DEFAULT_SIZE.width(), available.width()), min(DEFAULT_SIZE.height(), available.height() - 30))


class MainWindow(QMainWindow):
    """Sidebar + stacked pages + status bar; window state kept in ``ctx.settings``.

    Signals:
        closed: emitted once when the window closes (the app then shuts down).
    """

    closed = Signal()

    def __init__(self, ctx: AppContext, pages: list[PageEntry] | None = None) -> None:
        super().__init__()
        self.ctx = ctx
        self.setWindowTitle("Fleetdesk")
        self.setObjectName("MainWindow")
        self._entries = list(PAGES if pages is None else pages)
        self._widgets: dict[str, QWidget] = {}

        central = QWidget(self)
        layout = QHBoxLayout(central)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        self.sidebar = QListWidget(central)
        self.sidebar.setObjectName("Sidebar")
        self.sidebar.setFixedWidth(170)
        self.sidebar.setIconSize(QSize(20, 20))
        self.stack = QStackedWidget(central)
        layout.addWidget(self.sidebar)
        layout.addWidget(self.stack, 1)
        self.setCentralWidget(central)
        for entry in self._entries:
            item = QListWidgetItem(entry.title)
            item.setData(Qt.ItemDataRole.UserRole, entry.module)
            self.sidebar.addItem(item)
            holder = QWidget()  # replaced by the real page on first show
            holder.setObjectName(f"pending:{entry.module}")
            self.stack.addWidget(holder)
        self.sidebar.currentRowChanged.connect(self._show_row)

        self.status_label = QLabel(self)
        self.status_label.setObjectName("CloudStatus")
        self.statusBar().addWidget(self.status_label, 1)
        self.conn_label = QLabel(self)
        self.conn_label.setObjectName("ConnectionStatus")
        self.statusBar().addPermanentWidget(self.conn_label)
        ctx.cloud_state_changed.connect(self._refresh_status)
        ctx.profile_changed.connect(self._refresh_status)
        ctx.live.connection.connect(self._connection_changed)
        ctx.navigate.connect(self._navigate)
        ctx.live.follow_session(self._session_changed)

        self._restore_state()

    # -- pages --------------------------------------------------------------------------
    def page_titles(self) -> list[str]:
        """Titles in the sidebar, in order."""
        return [e.title for e in self._entries]

    def show_page(self, title: str) -> QWidget:
        """Select the page with this title and return its widget."""
        for row, entry in enumerate(self._entries):
            if entry.title == title:
                self.sidebar.setCurrentRow(row)
                return self.page(title)
        raise KeyError(title)

    def page(self, title: str) -> QWidget:
        """The page widget for ``title`` (created now if it was not yet)."""
        for row, entry in enumerate(self._entries):
            if entry.title == title:
                return self._ensure_page(row)
        raise KeyError(title)

    def current_title(self) -> str:
        row = self.sidebar.currentRow()
        return self._entries[row].title if 0 <= row < len(self._entries) else ""

    def _ensure_page(self, row: int) -> QWidget:
        entry = self._entries[row]
        widget = self._widgets.get(entry.module)
        if widget is not None:
            return widget
        try:
            module = importlib.import_module(entry.module)
            widget = module.create_page(self.ctx)
        except Exception as exc:  # a broken page must not take the window down
            log.exception("page %s failed to load", entry.module)
            widget = QLabel(f"The {entry.title} page could not load:\n{exc}")
            widget.setAlignment(Qt.AlignmentFlag.AlignCenter)
            widget.setWordWrap(True)
        widget.setObjectName(widget.objectName() or f"page:{entry.title}")
        old = self.stack.widget(row)
        assert old is not None  # the row holds the page's placeholder
        self.stack.insertWidget(row, widget)
        self.stack.removeWidget(old)
        old.deleteLater()
        self._widgets[entry.module] = widget
        return widget

    def _show_row(self, row: int) -> None:
        if 0 <= row < len(self._entries):
            self._ensure_page(row)
            self.stack.setCurrentIndex(row)

    # -- status -------------------------------------------------------------------------
    def _refresh_status(self, *_args) -> None:
        text = status_text(self.ctx)
        self.status_label.setText(text)
        profile, state = status_state(self.ctx)
        phase = get_cloud_backend(profile).status_phase(state)
        self.status_label.setProperty("phase", phase)
        _repolish(self.status_label)

    def _session_changed(self, session) -> None:
        self._refresh_status()
        if session is None:
            self.conn_label.setText("Cloud: not connected")
            self.conn_label.setProperty("phase", "disconnected")
            _repolish(self.conn_label)

    def _connection_changed(self, event) -> None:
        state = getattr(event.state, "value", str(event.state))
        text = f"Cloud: {state}"
        if event.reason and state in ("reconnecting", "failed"):
            text += f" ({event.reason})"
        self.conn_label.setText(text)
        self.conn_label.setToolTip(event.reason or "")
        self.conn_label.setProperty("phase", state)
        _repolish(self.conn_label)

    def _navigate(self, title: str, payload) -> None:
        """Show page ``title`` and hand it ``payload`` (its ``open_target`` method)."""
        if title not in self.page_titles():
            return
        page = self.show_page(title)
        opener = getattr(page, "open_target", None)
        if opener is not None and payload is not None:
            opener(payload)

    # -- window state -------------------------------------------------------------------
    def _restore_state(self) -> None:
        s = self.ctx.settings
        geometry = s.value("window/geometry")
        if isinstance(geometry, QByteArray) and not geometry.isEmpty():
            self.restoreGeometry(geometry)
        else:
            self.resize(default_size(self.screen().availableGeometry().size() if self.screen() else None))
        last = s.value("window/page", "")
        titles = self.page_titles()
        row = titles.index(last) if last in titles else 0
        if titles:
            self.sidebar.setCurrentRow(row)

    def save_state(self) -> None:
        """Write geometry and the current page to QSettings."""
        s = self.ctx.settings
        s.setValue("window/geometry", self.saveGeometry())
        s.setValue("window/page", self.current_title())
        s.sync()

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        self.save_state()
        for widget in self._widgets.values():
            widget.close()  # pages disconnect/stop timers in their closeEvent
        super().closeEvent(event)
        self.closed.emit()


def _repolish(widget: QWidget) -> None:
    """Re-apply the style sheet after a dynamic property (``phase``) changed."""
    widget.style().unpolish(widget)
    widget.style().polish(widget)
