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
    """(iot, dynamodb, iam or None) for a profile, from its cloud backend when there is one."""
    try:
        from fleetdesk.cloud.backend import get_cloud_backend
    except ImportError:  # the backend seam not there yet: build the clients here
        get_cloud_backend = None
    if get_cloud_backend is not None:
        backend = get_cloud_backend(profile)
        iam = backend.client("iam") if profile.kind == "aws" else None
        return backend.client("iot"), backend.client("dynamodb"), iam
    import boto3

    if profile.kind == "sandbox":
        from fleetdesk.errors import SandboxError
        from fleetdesk.sandbox.info import SandboxInfo

        info = SandboxInfo.load(profile.state_dir)
        if info is None:
            raise SandboxError("no sandbox is running for this profile", "start it with `fleetdesk sandbox up`")
        kw = info.boto3_kwargs()
        return boto3.client("iot", **kw), boto3.client("dynamodb", **kw), None
    session = boto3.Session(profile_name=profile.aws_profile or None, region_name=profile.region)
    return session.client("iot"), session.client("dynamodb"), session.client("iam")


def _setup(args: argparse.Namespace) -> int:
    from fleetdesk.cloud import account_setup
    from fleetdesk.cloud.cli import _profile

    profile = _profile(args)
    iot, dynamodb, iam = clients(profile)
    todo = account_setup.plan(iot, dynamodb, iam)
    if args.json and not todo.needed:
        print(json.dumps({"changed": False, "steps": [s.__dict__ for s in todo.steps]}))
        return 0
    if not args.json:
        print(f"Profile {profile.name} ({profile.kind}):\n{todo.text()}")
        if profile.kind == "aws":
            print(account_setup.COST_NOTE)
    if not todo.needed:
        if not args.json:
            print("Nothing to do: this account is set up for Fleetdesk.")
        return 0
    if profile.kind == "aws" and not args.yes:
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
