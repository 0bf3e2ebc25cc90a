"""`fleetdesk line status [--json] [--csv FILE] [--since HOURS]`: the factory line from its
shared ledger (``--ledger postgresql://...`` or FLEETDESK_LEDGER; the station's own SQLite
otherwise, which shows this station only).

`fleetdesk line ca create|register|rotate|status`: the line's own CA (fleetdesk.boards.line_ca);
register and rotate are the admin's one-time steps (AWS credentials that may register CAs).
"""

from __future__ import annotations

import argparse
import json
import sys


def register(sub: argparse._SubParsersAction) -> None:
    line = sub.add_parser("line", help="the factory line: every station on the shared ledger")
    line_sub = line.add_subparsers(dest="line_command", metavar="SUBCOMMAND")
    p = line_sub.add_parser("status", help="stations, boards/hour, PASS/FAIL by cause, pool level")
    p.add_argument("--json", action="store_true", help="one JSON document")
    p.add_argument("--csv", metavar="FILE", help="also write one line per station to FILE")
    p.add_argument("--since", type=float, default=8.0, metavar="HOURS", help="the shift (default: 8 h)")
    p.set_defaults(func=_status)
    p = line_sub.add_parser("sync", help="copy this station's offline outbox and pool share into the line's ledger")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_sync)
    ca = line_sub.add_parser("ca", help="the line's CA: create, register with AWS IoT (JITP), rotate, status")
    ca.add_argument("action", choices=("create", "register", "rotate", "status"))
    ca.add_argument("--name", default="Fleetdesk line CA", help="create: the CA certificate's common name")
    ca.add_argument("--policy", default="fleetdesk-thing-policy",
                    help="register: the thing policy JITP attaches (made from the stock one when missing)")
    ca.add_argument("--group", action="append", default=[], metavar="GROUP", help="register: a thing group (repeat)")
    ca.add_argument("--role-arn", default="", help="register: the IAM role JITP uses (AWSIoTThingsRegistration)")
    ca.add_argument("--state-dir", default=None, help="the sandbox state dir (default: the profile's)")
    ca.add_argument("--profile", default=None, help="the cloud profile to register with (default: active)")
    ca.add_argument("--json", action="store_true")
    ca.set_defaults(func=_ca)
    line.set_defaults(func=lambda args: (line.print_help(), 2)[1])


def _sync(args) -> int:
    from fleetdesk.boards.certpool import CertPool
    from fleetdesk.store.ledger import configured_ledger
    from fleetdesk.store.production import ProductionDB

    if not configured_ledger():
        print("fleetdesk: no line ledger is set (--ledger postgresql://..., FLEETDESK_LEDGER or the Line page)",
              file=sys.stderr)
        return 2
    db = ProductionDB()
    try:
        if db.offline:
            print(f"fleetdesk: the line's ledger cannot be reached; the outbox is kept ({db._outbox_path})",
                  file=sys.stderr)
            return 1
        out = db.sync_outbox()
    finally:
        db.close()
    pool = CertPool()
    try:
        pool.push()
        out["pool_unpushed"] = len(pool._unpushed())
    finally:
        pool.close()
    print(json.dumps(out) if args.json else ", ".join(f"{k}: {v}" for k, v in out.items()))
    return 0 if not out["pool_unpushed"] else 1


def _ca(args) -> int:
    from fleetdesk.boards.cli import _flash_profile
    from fleetdesk.boards.identity import CloudTarget
    from fleetdesk.boards.line_ca import LineCA

    ca = LineCA()
    out: dict = {"folder": str(ca.folder)}
    if args.action == "create":
        ca.create(args.name)
        out["created"] = str(ca.cert_file)
    else:
        profile = _flash_profile(args)
        cloud = (CloudTarget.from_profile(profile, args.state_dir) if profile is not None
                 else CloudTarget.from_sandbox(args.state_dir))
        kw = {"policy": args.policy, "groups": args.group or None, "role_arn": args.role_arn, "device": cloud.device}
        if args.action == "register":
            out["certificateId"] = ca.register(cloud.iot, **kw)
        elif args.action == "rotate":
            out["certificateId"], out["rotated_out"] = ca.rotate(cloud.iot, **kw)
        else:
            cid = ca.info().get("certificateId")
            if not cid:
                print("fleetdesk: the line CA is not registered yet: fleetdesk line ca register", file=sys.stderr)
                return 1
            d = cloud.iot.describe_ca_certificate(certificateId=cid)["certificateDescription"]
            out.update(certificateId=cid, status=d["status"], autoRegistrationStatus=d["autoRegistrationStatus"])
    print(json.dumps(out) if args.json else ", ".join(f"{k}: {v}" for k, v in out.items()))
    return 0


def _status(args) -> int:
    from fleetdesk.boards.line import read_line_status, write_csv

    status = read_line_status(args.since)
    if args.csv:
        write_csv(status, args.csv)
    if args.json:
        print(json.dumps(status))
        return 0
    print(f"line ledger {status['ledger']} since {status['since']}")
    for s in status["stations"]:
        causes = ", ".join(f"{k} {v}" for k, v in sorted(s["causes"].items()))
        print(f"  {s['station'] or '(unnamed)':16} {s['state']:12} PASS {s['pass']:4}  FAIL {s['fail']:4}"
              f"  {s['boards_per_hour']:7.1f} boards/h  open {s['open_runs']}" + (f"  ({causes})" if causes else ""))
    if not status["stations"]:
        print("  no station has used this ledger yet", file=sys.stderr)
    if "pool" in status:
        p = status["pool"]
        print(f"  pool: {p['free']} free, {p['pending_sync']} pending sync, {p['to_deactivate']} to deactivate")
    return 0
