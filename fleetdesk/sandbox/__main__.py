"""`python -m fleetdesk.sandbox ARGS` == `fleetdesk sandbox ARGS`, loading only the sandbox commands."""

import argparse
import sys

from fleetdesk.errors import FleetdeskError
from fleetdesk.sandbox import cli


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="fleetdesk")
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["sandbox", *(sys.argv[1:] if argv is None else argv)])
    try:
        return int(args.func(args) or 0)
    except FleetdeskError as exc:
        print(f"fleetdesk: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


sys.exit(main())
