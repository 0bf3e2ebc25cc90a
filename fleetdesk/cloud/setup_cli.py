"""`fleetdesk cloud setup`: make the profile's account ready for the fleet dashboard.

Shows what it will create first (and what it costs on AWS); on an AWS profile it asks before
changing anything (``--yes`` skips the question), on the sandbox it just does it. Idempotent.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def clients(profile) -> tuple[Any, Any, Any]:
    """(iot, dynamodb, iam or None) for a profile, from its cloud backend."""
    from fleetdesk.cloud.backend import get_cloud_backend

    backend = get_cloud_backend(profile)
    return backend.client("iot"), backend.client("dynamodb"), backend.iam_client()


def _setup(args: argparse.Namespace) -> int:
    from fleetdesk.cloud import account_setup
    from fleetdesk.cloud.cli import _profile

    from fleetdesk.cloud.backend import get_cloud_backend

    profile = _profile(args)
    billed = get_cloud_backend(profile).billed
    iot, dynamodb, iam = clients(profile)
    todo = account_setup.plan(iot, dynamodb, iam)
    if args.json and not todo.needed:
        print(json.dumps({"changed": False, "steps": [s.__dict__ for s in todo.steps]}))
        return 0
    if not args.json:
        print(f"Profile {profile.name} ({profile.kind}):\n{todo.text()}")
        if billed:
            print(account_setup.COST_NOTE)
    if not todo.needed:
        if not args.json:
            print("Nothing to do: this account is set up for Fleetdesk.")
        return 0
    if billed and not args.yes:
        if not sys.stdin.isatty():
            print("fleetdesk: not changing an AWS account without confirmation: run again with --yes",
                  file=sys.stderr)
            return 2
        if input("Create these in the AWS account? [y/N] ").strip().lower() not in ("y", "yes"):
            print("Nothing changed.")
            return 1
    done = account_setup.apply(iot, dynamodb, iam)
    if args.json:
        print(json.dumps({"changed": True, "steps": [s.__dict__ for s in done.steps]}))
    else:
        print("Done: the account is set up for Fleetdesk.")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("cloud", help="the account behind a profile (one-time setup for the dashboard)")
    sub = p.add_subparsers(dest="cloud_command", metavar="ACTION")
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])
    s = sub.add_parser("setup", help="create fleet indexing, the telemetry table and rule, and the device policy "
                                     "(shows what first; asks on AWS)")
    s.add_argument("--profile", default=None, help="profile name (default: the current one)")
    s.add_argument("--yes", action="store_true", help="do not ask before changing an AWS account")
    s.add_argument("--json", action="store_true", help="one JSON line: what was (or would be) done")
    s.set_defaults(func=_setup)
