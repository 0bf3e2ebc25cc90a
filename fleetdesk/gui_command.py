"""`fleetdesk gui`: start the desktop app (imports Qt only when run)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("gui", help="start the desktop app")
    p.add_argument("--profile", help="profile name to use (default: the active one, 'sandbox' at first)")
    p.add_argument("--state-dir", help="sandbox state dir (default: per-user data dir)")
    p.set_defaults(func=_run)


def missing_display_libraries(environ: dict | None = None, find=None) -> str | None:
    """Why Qt's X11 (xcb) plugin cannot start here, said the way to fix it; None when it can.

    Qt 6.5+ needs libxcb-cursor0 (and the other xcb-util libraries) for xcb; without one of
    them Qt only prints "could not load the Qt platform plugin xcb" and aborts. Only checked when xcb will be used (Linux, a DISPLAY,
    no other QT_QPA_PLATFORM such as offscreen or wayland).
    """
    import ctypes.util
    import os
    import sys

    env = os.environ if environ is None else environ
    find = find or ctypes.util.find_library
    if not sys.platform.startswith("linux") or not env.get("DISPLAY"):
        return None
    platform = env.get("QT_QPA_PLATFORM", "")
    if platform and not platform.startswith("xcb"):
        return None
    if env.get("WAYLAND_DISPLAY") and not platform:
        return None  # Qt picks its Wayland plugin first
    missing = [lib for lib in XCB_LIBRARIES if find(lib) is None]
    if not missing:
        return None
    debian = " ".join(XCB_LIBRARIES[lib] for lib in missing)
    return (f"The window cannot open: Qt's X11 plugin needs {', '.join('lib' + m for m in missing)}, not installed "
            f"here. Install: Debian/Ubuntu `sudo apt-get install {debian}` (Fedora: `sudo dnf install "
            "xcb-util-cursor xcb-util-wm xcb-util-keysyms xcb-util-image xcb-util-renderutil libxkbcommon-x11`); "
            "then run `fleetdesk gui` again.")


# what PySide6's libqxcb.so links beyond libxcb itself (ldd), and the Debian package of each;
# libxcb-cursor0 is the one Qt 6.5+ added and desktops often lack
XCB_LIBRARIES = {
    "xcb-cursor": "libxcb-cursor0", "xcb-icccm": "libxcb-icccm4", "xcb-keysyms": "libxcb-keysyms1",
    "xcb-image": "libxcb-image0", "xcb-render-util": "libxcb-render-util0", "xcb-xkb": "libxcb-xkb1",
    "xkbcommon-x11": "libxkbcommon-x11-0", "xcb-shape": "libxcb-shape0", "xcb-randr": "libxcb-randr0",
}


def _run(args: argparse.Namespace) -> int:
    import sys

    problem = missing_display_libraries()
    if problem:
        print(problem, file=sys.stderr)
        return 2
    from fleetdesk_gui.app import run_app  # deferred: keeps Qt out of the domain layer

    return run_app(args)
