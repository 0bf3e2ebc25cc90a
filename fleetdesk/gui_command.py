"""`fleetdesk gui`: start the desktop app (imports Qt only when run)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("gui", help="start the desktop app")
    p.add_argument("--profile", help="profile name to use (default: the active one, 'sandbox' at first)")
    p.add_argument("--state-dir", help="sandbox state dir (default: per-user data dir)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from gui.app import run_app  # deferred: keeps Qt out of the domain layer

    return run_app(args)
