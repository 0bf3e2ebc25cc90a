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
    handle = win.windowHandle()
    avail = win.screen().availableGeometry()
    # the window manager has mapped and maximized it: exposed, and as wide as the screen's free area
    while not (handle.isExposed() and win.isMaximized() and win.frameGeometry().width() >= avail.width()):
        if clock.elapsed() > 10_000:
            raise AssertionError(f"the window manager did not map and maximize {win.windowTitle()!r} within 10 s "
                                 f"(exposed={handle.isExposed()}, frame={win.frameGeometry()}, screen={avail})")
        QApplication.processEvents()
    win.repaint()  # paint now, not at the next event loop turn
    QApplication.processEvents()
    screen = win.screen()
    frame = win.frameGeometry()
    return screen.grabWindow(0, frame.x(), frame.y(), frame.width(), frame.height())
