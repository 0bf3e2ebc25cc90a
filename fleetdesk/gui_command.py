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

    Qt 6.5+ needs libxcb-cursor0 for xcb; without it Qt only prints "could not load the Qt
    platform plugin xcb" and aborts. Only checked when xcb will be used (Linux, a DISPLAY,
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
    if find("xcb-cursor") is None:
        return ("The window cannot open: the X11 library libxcb-cursor is not installed (Qt needs it). "
                "Install it: Debian/Ubuntu `sudo apt-get install libxcb-cursor0`, Fedora `sudo dnf install "
                "xcb-util-cursor`, Arch `sudo pacman -S xcb-util-cursor`; then run `fleetdesk gui` again.")
    return None


def _run(args: argparse.Namespace) -> int:
    import sys

    problem = missing_display_libraries()
    if problem:
        print(problem, file=sys.stderr)
        return 2
    from gui.app import run_app  # deferred: keeps Qt out of the domain layer

    return run_app(args)
