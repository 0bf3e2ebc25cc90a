"""`fleetdesk line status [--json] [--csv FILE] [--since HOURS]`: the factory line from its
shared ledger (``--ledger postgresql://...`` or FLEETDESK_LEDGER; the station's own SQLite
otherwise, which shows this station only)."""

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
    line.set_defaults(func=lambda args: (line.print_help(), 2)[1])


def _status(args) -> int:
    from fleetdesk.boards.certpool import CertPool
    from fleetdesk.boards.line import line_status, write_csv
    from fleetdesk.store.production import ProductionDB

    db = ProductionDB()
    pool = CertPool.existing()
    try:
        status = line_status(db, pool, since_hours=args.since)
    finally:
        db.close()
        if pool is not None:
            pool.close()
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
