"""`fleetdesk fleet ...`: the fleet command family.

Sub-commands come from the modules listed in :data:`FLEET_COMMAND_MODULES` (registered by
:func:`fleetdesk.cli.register_modules`: each must import); each exposes
``register(fleet_subparsers)`` and sets ``func`` on its parser.
"""

from __future__ import annotations

import argparse

from fleetdesk.cli import register_modules

FLEET_COMMAND_MODULES = (
    "fleetdesk.fleet.simulate_cli",
    "fleetdesk.fleet.watch_cli",
)


def register(subparsers) -> None:
    p = subparsers.add_parser("fleet", help="the fleet: simulate devices, list and watch things",
                              description="Fleet commands.")
    register_modules(p.add_subparsers(dest="fleet_command", metavar="ACTION"), FLEET_COMMAND_MODULES)
    p.set_defaults(func=lambda args: _help(p))


def _help(p: argparse.ArgumentParser) -> int:
    p.print_help()
    return 2
