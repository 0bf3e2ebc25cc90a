"""`fleetdesk boards list|info|virtual` and `fleetdesk flash`.

    fleetdesk boards list [--json]
    fleetdesk boards info PORT [--json]
    fleetdesk flash PORT... | --all  --bundle B [--identity | --claim [--claim-template T]] [--baud N] [--json]

`flash` prints one line (one JSON document with --json) per board and exits 0 only when
every board passed.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fleetdesk.boards.events import BoardEvent


def register(sub: argparse._SubParsersAction) -> None:
    boards = sub.add_parser("boards", help="list and inspect serial ports and boards")
    boards_sub = boards.add_subparsers(dest="boards_command", metavar="SUBCOMMAND")
    p = boards_sub.add_parser("list", help="list serial ports (USB and virtual)")
    p.add_argument("--json", action="store_true", help="one JSON document per port")
    p.add_argument("--all", action="store_true", help="also list non-USB serial ports")
    p.set_defaults(func=_list)
    p = boards_sub.add_parser("info", help="read chip, revision, MAC, flash size of a board")
    p.add_argument("port")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_info)
    p = boards_sub.add_parser("pool", help="offline certificate pool: status, refill N, sync, reserve N")
    p.add_argument("action", choices=("status", "refill", "sync", "reserve"))
    p.add_argument("count", nargs="?", type=int, default=16,
                   help="refill: free certificates to keep; reserve: how many of the line's pool this station keeps "
                        "for when the line's database is away")
    p.add_argument("--state-dir", default=None, help="sandbox state dir (default: the sandbox profile's)")
    p.add_argument("--profile", default=None, help="mint into this profile's cloud (sandbox or AWS; default: active)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_pool)
    p = boards_sub.add_parser("records", help="the production record: export every flash attempt as CSV")
    p.add_argument("action", choices=("export",))
    p.add_argument("output", help="CSV file to write ('-' = stdout)")
    p.add_argument("--db", default=None, help="the ledger (SQLite file or postgresql:// URL; default: this station's)")
    p.set_defaults(func=_records)
    boards.set_defaults(func=lambda args: (boards.print_help(), 2)[1])
    from fleetdesk.virtual import cli as virtual_cli

    virtual_cli.add_virtual_command(boards_sub)  # `boards virtual|virtual-ctl|press`

    f = sub.add_parser("flash", help="flash boards (optionally giving each its cloud identity)")
    f.add_argument("ports", nargs="*", metavar="PORT", help="serial ports / socket:// URLs")
    f.add_argument("--all", action="store_true", help="every probe-able port (known USB bridges, virtual boards)")
    f.add_argument("--bundle", required=True, help="bundle dir, manifest.json, merged .bin or flasher_args.json")
    f.add_argument("--identity", action="store_true", help="create thing + cert and write the device config")
    f.add_argument("--baud", type=int, default=460800, help="flash baud rate (falls back to 115200 on errors)")
    f.add_argument("--name-template", default="fd-{mac}", help="thing name template ({mac}, {chip}, {n}, {serial:06d} = line-wide serial)")
    f.add_argument("--operator", default="", help="operator name for the production record")
    f.add_argument("--station", default="", help="station name for the production record")
    f.add_argument("--product", default="", help="product id written into the device config")
    f.add_argument("--state-dir", default=None,
                   help="with --identity: use the sandbox running in this state dir instead of the profile")
    f.add_argument("--profile", default=None, metavar="NAME",
                   help="with --identity: the cloud profile (sandbox or AWS) to create things in "
                        "(default: the active profile)")
    f.add_argument("--online-timeout", type=float, default=60, help="seconds to wait for the board online")
    f.add_argument("--no-wait-online", action="store_true", help="PASS after boot without waiting for presence")
    f.add_argument("--factory-reset", action="store_true", help="new identity even for boards already on file")
    f.add_argument("--restore-identity", action="store_true",
                   help="write the identity on file (thing, certificate) back to a board that lost it")
    f.add_argument("--repurpose", action="store_true", help="confirm overwriting another product's identity")
    f.add_argument("--offline-pool", action="store_true",
                   help="identities from the pre-minted certificate pool (flashes with the network down)")
    f.add_argument("--pool-share", type=int, default=0, metavar="N",
                   help="with --offline-pool on a line ledger: keep N of the line's certificates in this station's "
                        "share, so it flashes on through an outage of the line's database (a dead station's share "
                        "goes back to the line after FLEETDESK_POOL_LEASE_S, default 300 s)")
    f.add_argument("--claim", action="store_true",
                   help="write the station's claim certificate instead: each board provisions itself by claim "
                        "at first boot (no cloud call per board; works offline once the claim cert exists)")
    f.add_argument("--claim-template", default="", metavar="NAME",
                   help="with --claim: the fleet-provisioning template boards claim with (default fleetdesk-claim)")
    f.add_argument("--line-ca", action="store_true",
                   help="sign each board's certificate with the line's CA here; AWS IoT creates the thing at its "
                        "first connect (JITP). No AWS credentials on the station (fleetdesk line ca register, once)")
    f.add_argument("--line-ca-dir", default=None, metavar="DIR",
                   help="with --line-ca: the line CA's folder (default: <data dir>/line-ca)")
    f.add_argument("--allow-usb", action="append", default=[], metavar="VID:PID", help="also probe this USB id")
    f.add_argument("--json", action="store_true", help="one JSON document per board")
    f.set_defaults(func=_flash)


def _list(args) -> int:
    from fleetdesk.boards.ports import list_ports, may_probe

    ports = list_ports(include_serial=args.all)
    for p in ports:
        if args.json:
            print(json.dumps({**p.to_json(), "probe": may_probe(p)}))
        else:
            ids = p.usb_id or p.kind
            what = p.bridge or p.description or ""
            extra = f" {p.chip} {p.mac}" if p.chip else ""
            print(f"{p.device:32} {ids:10} {what}{extra}")
    if not ports and not args.json:
        print("no serial ports found", file=sys.stderr)
    return 0


def _info(args) -> int:
    from fleetdesk.boards.advice import advise
    from fleetdesk.boards.flasher import probe
    from fleetdesk.boards.ports import pids_using

    users = pids_using(args.port)
    if users:
        msg = f"port in use by PID {', '.join(map(str, users))}"
        print(json.dumps({"port": args.port, "ok": False, "state": "busy", "error": msg}) if args.json else msg)
        return 1
    r = probe(args.port)
    if args.json:
        out = {"port": args.port, "ok": r.ok, **r.info}
        if not r.ok:
            adv = advise(r.error)
            out.update(error=r.error, state=adv.code, advice=adv.line())
        print(json.dumps(out))
    elif r.ok:
        i = r.info
        rev = i.get("revision")
        print(f"{args.port}: {i.get('description') or i.get('chip')}")
        print(f"  features: {', '.join(i.get('features') or [])}")
        print(f"  crystal:  {i.get('crystal_mhz')} MHz   revision: v{rev // 100}.{rev % 100}" if rev is not None else "")
        print(f"  MAC:      {i.get('mac')}")
        print(f"  flash:    {i.get('flash_size')} (id {i.get('flash_id')})")
        print(f"  security: secure boot {'on' if i.get('secure_boot') else 'off'}, "
              f"flash encryption {'on' if i.get('flash_encryption') else 'off'}")
    else:
        print(f"{args.port}: {advise(r.error).line()}\n  ({r.error})", file=sys.stderr)
    return 0 if r.ok else 1


def _records(args) -> int:
    from fleetdesk.store.production import ProductionDB

    db = ProductionDB(args.db)
    out = "/dev/stdout" if args.output == "-" else args.output
    try:
        n = db.export_csv(out)
    except OSError as exc:
        print(f"cannot write {args.output}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    if args.output != "-":
        print(f"{n} attempt(s) written to {args.output}", file=sys.stderr)
    return 0


def _pool(args) -> int:
    from fleetdesk.boards.certpool import CertPool
    from fleetdesk.cloud.backend import CloudTarget
    from fleetdesk.config import Profile
    from fleetdesk.errors import FleetdeskError

    pool = CertPool()
    out: dict = {}
    try:
        if args.action == "reserve":
            out["reserved"] = pool.reserve(args.count)
        if args.action in ("refill", "sync"):
            profile = _flash_profile(args)
            target = CloudTarget.from_profile(profile or Profile(), args.state_dir)
            if args.action == "refill":
                from fleetdesk.progress import bars

                with bars(args.json) as shown:  # in a terminal only
                    out["added"] = pool.refill(target, args.count, on_progress=lambda level, want: shown.update(
                        "certificate pool", stage=f"{level}/{want}", percent=100.0 * level / max(want, 1)))
            else:
                report = pool.sync(target)
                out["synced"] = list(report)
                if report.failed:
                    out["refused"] = [{"thing": f.thing, "certificate_id": f.certificate_id, "reason": f.reason}
                                      for f in report.failed]
                    for f in report.failed:
                        print(f"fleetdesk: the cloud refused to register {f.thing} ({f.reason})", file=sys.stderr)
    except FleetdeskError as exc:
        print(f"fleetdesk: {exc}", file=sys.stderr)
        return 2
    out.update(free=pool.level(), pending_sync=pool.pending(), to_deactivate=pool.failed())
    if args.json:
        print(json.dumps(out))
    else:
        print(", ".join(f"{k.replace('_', ' ')}: {v if not isinstance(v, list) else len(v)}" for k, v in out.items()))
    return 1 if out.get("refused") else 0


# `flash` options that are the StationSettings field of the same name, as given
_FLASH_SETTINGS = ("bundle", "baud", "name_template", "operator", "station", "online_timeout", "factory_reset",
                   "restore_identity", "repurpose", "offline_pool", "pool_share", "claim", "claim_template", "line_ca",
                   "line_ca_dir")


def _flash(args) -> int:
    from fleetdesk.boards.station import Station, StationSettings
    from fleetdesk.errors import FleetdeskError

    try:
        profile = _flash_profile(args)
    except FleetdeskError as exc:
        print(f"fleetdesk: {exc}", file=sys.stderr)
        return 2
    settings = StationSettings(
        **{name: getattr(args, name) for name in _FLASH_SETTINGS},
        identity=args.identity or args.claim or args.line_ca,
        product=args.product or None,
        sandbox_state_dir=args.state_dir,
        profile=profile,
        wait_online=not args.no_wait_online,
        allowed_usb=args.allow_usb,
    )
    try:
        station = Station(settings)
    except FleetdeskError as exc:  # unusable bundle or contradicting settings: nothing started
        print(f"fleetdesk: {exc}", file=sys.stderr)
        return 2
    if station.cloud is not None or station.pool is not None:  # runs a crash interrupted: no certificate left ACTIVE
        for rec in station.recover():
            what = "left an unfinished run" if rec.get("left_open") else "recovered an interrupted run"
            print(f"{what} on {rec.get('port')} (stopped at {rec.get('last_step') or 'start'}): "
                  f"{rec['action']}", file=sys.stderr)
    ports = list(args.ports)
    if args.all:
        ports += [p for p in station.probeable_ports() if p not in ports]
    if not ports:
        print("fleetdesk: no ports to flash (name them or use --all)", file=sys.stderr)
        return 2

    def report(res) -> None:
        if args.json:
            print(json.dumps(res.to_json()), flush=True)
        else:
            tail = f" — {res.advice}" if res.result != "PASS" and res.advice else ""
            ident = (f" {res.thing}" if res.thing else "") + (f" cert {res.certificate_id[:10]}" if res.certificate_id else "")
            note = "".join(f" ({n})" for n in res.notes())  # the same notes the station tile shows
            if res.restore_offered:  # a question, not a failure
                print(f"HOLD {res.port} {res.chip or ''} {res.mac or ''} — {res.error.splitlines()[0]}; nothing was "
                      "written. Re-run with --restore-identity to write it back, or --factory-reset for a new one",
                      flush=True)
                return
            print(f"{res.result} {res.port} {res.chip or ''} {res.mac or ''}{ident}{note} {res.duration_s:.1f}s{tail}",
                  flush=True)

    try:
        station.check_ready()
    except FleetdeskError as exc:
        print(f"fleetdesk: {exc}", file=sys.stderr)
        return 2
    if station.pool is not None and station.pool.level() < len(ports):
        level = station.pool.level()
        print(f"fleetdesk: the certificate pool holds {level} certificates for {len(ports)} boards: flashing "
              f"{', '.join(ports[:level])}; refill it (`fleetdesk boards pool refill N`) for "
              f"{', '.join(ports[level:])}", file=sys.stderr)
        ports, skipped = ports[:level], ports[level:]
    else:
        skipped = []
    from fleetdesk.interrupt import exit_code, stop_on_signals
    from fleetdesk.progress import bars

    with bars(args.json) as progress, stop_on_signals(station.cancel_all) as stopped:
        def on_event(port: str, ev: BoardEvent) -> None:
            if ev.stage is not None or ev.percent is not None:
                progress.update(port, stage=ev.stage, percent=ev.percent)

        def on_result(res) -> None:
            progress.update(res.port, stage=res.result, done=True)
            report(res)

        results = station.run_many(ports, on_result=on_result, on_event=on_event) if ports else []
    if not args.json and sys.stdin.isatty() and not stopped:
        results = [_ask_restore(station, r, report) if r.restore_offered else r for r in results]
    station.close()
    return exit_code(stopped, 0 if results and not skipped and all(r.result == "PASS" for r in results) else 1)


def _ask_restore(station, res, report):
    """At a terminal: answer a restore offer now (r = restore, n = new identity, anything else = skip)."""
    answer = input(f"{res.port}: restore the identity on file? [r]estore / [n]ew identity / [s]kip: ").strip().lower()
    overrides = {"r": {"restore_identity": True, "factory_reset": False},
                 "n": {"factory_reset": True, "restore_identity": False}}.get(answer[:1])
    if overrides is None:
        return res
    again = station.run_one(res.port, overrides=overrides)
    report(again)
    return again


def _flash_profile(args):
    """The profile `flash --identity` creates things in: None (the sandbox at --state-dir)
    when --state-dir is given, else --profile NAME or the active profile."""
    if args.state_dir and not args.profile:
        return None
    from fleetdesk.cli_common import profile_from

    return profile_from(args)
