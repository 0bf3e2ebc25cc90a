"""The `fleetdesk` command line. `python -m fleetdesk` and `main.py` run the same thing.

Each command family lives in its own module exposing ``register(subparsers)``; a
registered sub-parser sets ``func`` (called with the parsed args, returns an exit code).
Modules import their heavy dependencies inside the handlers so `fleetdesk --help` and
the GUI start fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from fleetdesk import __version__
from fleetdesk.errors import FleetdeskError

# Command families, in the order `--help` lists them. Each must import and register: a
# module that fails to is an error of the CLI, never skipped. (`boards virtual` is added by
# fleetdesk.boards.cli from fleetdesk.virtual.cli.)
COMMAND_MODULES = (
    "fleetdesk.gui_command",
    "fleetdesk.sandbox.cli",
    "fleetdesk.cloud.cli",
    "fleetdesk.cloud.setup_cli",
    "fleetdesk.boards.cli",
    "fleetdesk.boards.line_cli",
    "fleetdesk.firmware_cli",
    "fleetdesk.fleet.cli",
    "fleetdesk.ble.cli",
)


def register_modules(subparsers, names) -> None:
    """Call ``register(subparsers)`` of each module named in ``names``, in order.

    Raises:
        ImportError: a listed module is missing or fails to import (never skipped).
        AttributeError: a listed module has no ``register``.
    """
    for name in names:
        importlib.import_module(name).register(subparsers)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fleetdesk",
        description="Flash, provision and watch ESP32/ESP8266 boards on AWS IoT (or the local sandbox).",
    )
    parser.add_argument("--version", action="version", version=f"fleetdesk {__version__}")
    parser.add_argument("--ledger", metavar="URL", help="the line's shared ledger, postgresql://user@host/db "
                        "(default: FLEETDESK_LEDGER, then Settings, then this station's own SQLite)")
    parser.add_argument("-v", "--verbose", dest="log_verbose", action="store_true",
                        help="log what fleetdesk does (INFO) on stderr")
    parser.add_argument("--debug", dest="log_debug", action="store_true",
                        help="log everything (DEBUG) on stderr, and show the traceback of an unexpected error")
    register_modules(parser.add_subparsers(dest="command", metavar="COMMAND"), COMMAND_MODULES)
    return parser


def setup_logging(verbose: bool, debug: bool) -> None:
    """--verbose: fleetdesk's own INFO lines; --debug: DEBUG from everything. Neither: warnings only."""
    import logging

    if not (verbose or debug):
        return  # Python's last-resort handler prints warnings and errors as they are
    root = logging.getLogger()
    if not any(getattr(h, "fleetdesk_cli", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.fleetdesk_cli = True  # type: ignore[attr-defined]  # marks our own handler
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
    if debug:
        root.setLevel(logging.DEBUG)
    else:
        logging.getLogger("fleetdesk").setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "ledger", None):  # every store of this process opens the line's ledger
        import os

        os.environ["FLEETDESK_LEDGER"] = args.ledger
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    debug = getattr(args, "log_debug", False)
    setup_logging(getattr(args, "log_verbose", False), debug)
    try:
        return int(func(args) or 0)
    except FleetdeskError as exc:
        print(f"fleetdesk: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # the last resort: one line; the traceback only with --debug
        if debug:
            raise
        detail = str(exc) or type(exc).__name__
        print(f"fleetdesk: unexpected error ({type(exc).__name__}): {detail}\n"
              "fleetdesk: run the same command with --debug for the details to report", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
