"""Screenshots as a user sees them (a module beside tests/conftest.py: every test area imports it)."""

from __future__ import annotations


def real_window_grab(widget):
    """A widget's picture: on a real X server (QT_QPA_PLATFORM=xcb, e.g. Xvfb 1366x768 with a
    window manager) its top-level window maximized as the screen shows it, title bar included;
    offscreen, the widget rendered by itself."""
    from PySide6.QtCore import QElapsedTimer
    from PySide6.QtGui import QGuiApplication
    from PySide6.QtWidgets import QApplication

    if QGuiApplication.platformName() != "xcb":
        return widget.grab()
    win = widget.window()
    win.showMaximized()
    win.raise_()
    win.activateWindow()
    clock = QElapsedTimer()
    clock.start()
    while clock.elapsed() < 700:  # the window manager maps, maximizes and paints the frame
        QApplication.processEvents()
    screen = win.screen()
    frame = win.frameGeometry()
    return screen.grabWindow(0, frame.x(), frame.y(), frame.width(), frame.height())
