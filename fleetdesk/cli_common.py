"""What every command family shares: the ``--json``, ``--state-dir`` and ``--profile``
options, the profile they name, and how a handler runs a coroutine.

Example::

    p = sub.add_parser("list")
    add_json(p)
    add_profile(p)
    p.set_defaults(func=lambda args: run_async(_list(args)))
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Coroutine
from typing import Any

JSON_HELP = "one JSON document per line on stdout"


def add_json(p: argparse.ArgumentParser, help: str = JSON_HELP) -> None:
    """``--json``: machine-readable output (one JSON document per line)."""
    p.add_argument("--json", action="store_true", help=help)


def add_profile(p: argparse.ArgumentParser, help: str = "profile name (default: the active one)") -> None:
    """``--profile NAME``: which cloud profile the command acts on."""
    p.add_argument("--profile", default=None, metavar="NAME", help=help)


def add_state_dir(p: argparse.ArgumentParser, help: str = "sandbox state dir (default: the per-user one)",
                  type: Any = None) -> None:
    """``--state-dir DIR``: a sandbox (or virtual board) state dir."""
    p.add_argument("--state-dir", default=None, metavar="DIR", type=type or str, help=help)


def profile_from(args: argparse.Namespace):
    """The profile ``--profile`` names, else the active one.

    Raises:
        ConfigError: no profile of that name (the known ones are listed).
    """
    from fleetdesk.config import Profiles
    from fleetdesk.errors import ConfigError

    profiles = Profiles.load()
    name = getattr(args, "profile", None)
    if not name:
        return profiles.current
    if name not in profiles.items:
        raise ConfigError(f"no profile named {name!r} (known: {', '.join(sorted(profiles.items))})",
                          "create it in Settings, or pick one of the known profiles")
    return profiles.items[name]


def run_async(coro: Coroutine[Any, Any, Any]) -> int:
    """Run a handler's coroutine to the end; its result is the exit code (None = 0)."""
    return int(asyncio.run(coro) or 0)
