"""CLI: ``fleetdesk shadow|jobs|things|rpc|telemetry ...`` (each with ``--json``).

``--json`` prints one JSON document per line on stdout; otherwise human text. Exit codes:
0 ok, 1 error (message + advice on stderr), 3 version conflict, 4 timeout/no reply.
Commands act on the active profile (``--profile`` picks another). MQTT commands use a
one-off client id, so they never take over the GUI's persistent session.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from fleetdesk.cli_common import add_json, add_profile, profile_from, run_async
from fleetdesk.errors import FleetdeskError

EXIT_CONFLICT = 3
EXIT_TIMEOUT = 4


def _emit(args: argparse.Namespace, doc: Any, text: str | None = None) -> None:
    if getattr(args, "json", False):
        print(json.dumps(doc, default=str), flush=True)
    else:
        print(text if text is not None else json.dumps(doc, indent=2, default=str), flush=True)


def _json_arg(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise FleetdeskError(
            f"{what} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",  # type: ignore[attr-defined]
            "quote it for the shell, e.g. '{\"on\": true}'",
        ) from exc


def _profile(args: argparse.Namespace):
    return profile_from(args)


def _run(coro_fn, args: argparse.Namespace) -> int:
    from fleetdesk.cloud.errors import RequestTimeout, ShadowConflict

    try:
        return run_async(coro_fn(args))
    except ShadowConflict as exc:
        print(f"fleetdesk: {exc}", file=sys.stderr)
        if getattr(args, "json", False):
            print(json.dumps({"error": "conflict", "changed": exc.changed, "current": exc.current}), flush=True)
        else:
            print("changed since: " + (", ".join(exc.changed) or "(nothing in your keys)"), file=sys.stderr)
        return EXIT_CONFLICT
    except RequestTimeout as exc:
        print(f"fleetdesk: {exc}", file=sys.stderr)
        return EXIT_TIMEOUT


async def _connect(args: argparse.Namespace):
    from fleetdesk.cloud.connection import Connection
    from fleetdesk.cloud.session import app_settings

    conn = Connection(app_settings(_profile(args), ephemeral=True))
    await conn.start()
    try:
        await conn.wait_connected(args.timeout)
    except BaseException:
        await conn.stop()
        raise
    return conn


# ---------------------------------------------------------------------- shadow
def _update_kwargs(args: argparse.Namespace) -> dict:
    """Validate `shadow update` input before connecting."""
    kw: dict = {}
    if args.doc is not None:
        body = _json_arg(args.doc, "--doc")
        state = body.get("state", body) if isinstance(body, dict) else None
        if not isinstance(state, dict) or not ({"desired", "reported"} & set(state)):
            raise FleetdeskError("--doc needs {\"state\": {\"desired\"|\"reported\": ...}}")
        kw.update({k: state[k] for k in ("desired", "reported") if k in state})
        if args.version is None and isinstance(body.get("version"), int):
            args.version = body["version"]
    if args.desired is not None:
        kw["desired"] = _json_arg(args.desired, "--desired")
    if args.reported is not None:
        kw["reported"] = _json_arg(args.reported, "--reported")
    if not kw:
        raise FleetdeskError("nothing to update", "give --desired, --reported or --doc")
    return kw


async def _shadow(args: argparse.Namespace) -> int:
    from fleetdesk.cloud.shadows import Shadows

    kw = _update_kwargs(args) if args.shadow_cmd == "update" else {}
    conn = await _connect(args)
    shadows = Shadows(conn, timeout=args.timeout)
    try:
        await shadows.start()
        if args.shadow_cmd == "get":
            doc = await shadows.get(args.thing, args.name)
            _emit(args, doc)
        elif args.shadow_cmd == "update":
            doc = await shadows.update(args.thing, name=args.name, version=args.version, **kw)
            _emit(args, doc, f"updated {args.thing}: version {doc.get('version')}")
        else:  # watch
            seen = 0
            async for ev in shadows.events(args.thing, kinds=("delta", "documents")):
                if ev.name != args.name:
                    continue
                _emit(args, {"thing": ev.thing, "name": ev.name, "kind": ev.kind, "doc": ev.doc},
                      f"{ev.kind:9} v{ev.doc.get('version', (ev.doc.get('current') or {}).get('version'))} "
                      f"{json.dumps(ev.doc.get('state') or (ev.doc.get('current') or {}).get('state'))}")
                seen += 1
                if args.count and seen >= args.count:
                    break
    finally:
        await shadows.stop()
        await conn.stop()
    return 0


# ---------------------------------------------------------------------- things
async def _things(args: argparse.Namespace) -> int:
    from fleetdesk.cloud.backend import get_cloud_backend

    cp = get_cloud_backend(_profile(args)).control_plane()
    if args.things_cmd == "list":
        things = await cp.list_things()
        if args.json:
            for t in things:
                _emit(args, {k: t.get(k) for k in ("thingName", "thingArn", "attributes", "version")})
        else:
            for t in things:
                shown = " ".join(f"{k}={v}" for k, v in sorted((t.get("attributes") or {}).items()))
                print(f"{t['thingName']}\t{shown}")
            print(f"{len(things)} things", file=sys.stderr)
    else:
        attrs = {}
        for a in args.attr or []:
            if "=" not in a:
                raise FleetdeskError(f"--attr {a!r} is not KEY=VALUE")
            k, v = a.split("=", 1)
            attrs[k] = v
        out = await cp.create_thing(args.name, attrs, args.group or [])
        out.pop("ResponseMetadata", None)
        _emit(args, out, f"created {out.get('thingName', args.name)} ({out.get('thingArn', '')})")
    return 0


# ---------------------------------------------------------------------- jobs
def _job_document(args: argparse.Namespace) -> Any:
    from pathlib import Path

    from fleetdesk.paths import RESOURCES_DIR

    if args.template:
        path = RESOURCES_DIR / "jobs" / f"{args.template}.json"
        if not path.is_file():
            names = sorted(p.stem for p in (RESOURCES_DIR / "jobs").glob("*.json"))
            raise FleetdeskError(f"no job template {args.template!r}", "known: " + (", ".join(names) or "none"))
        return path.read_text()
    if not args.document:
        raise FleetdeskError("no job document", "give --document FILE|JSON or --template NAME")
    p = Path(args.document)
    text = p.read_text() if p.is_file() else args.document
    _json_arg(text, "the job document")
    return text


async def _jobs(args: argparse.Namespace) -> int:
    from fleetdesk.cloud.backend import get_cloud_backend

    cp = get_cloud_backend(_profile(args)).control_plane()
    cmd = args.jobs_cmd
    if cmd == "create":
        out = await cp.create_job(
            args.job_id, _job_document(args), things=args.thing or [], groups=args.group or [],
            continuous=args.continuous, description=args.description or "", max_per_minute=args.rate,
            abort_failed_percent=args.abort_percent, timeout_minutes=args.timeout_minutes)
        _emit(args, out, f"created job {out.get('jobId', args.job_id)}")
    elif cmd == "list":
        jobs = await cp.list_jobs(args.status)
        for j in jobs:
            _emit(args, j, f"{j.get('jobId')}\t{j.get('status')}\t{j.get('targetSelection', '')}")
    elif cmd == "describe":
        job = await cp.describe_job(args.job_id)
        _emit(args, job)
        if args.executions:
            for e in await cp.job_executions(args.job_id):
                _emit(args, {"thing": e["thing"], "status": e["status"],
                             "execution": e.get("jobExecutionSummary")}, f"  {e['thing']}\t{e['status']}")
    else:  # cancel
        if args.thing:
            await cp.cancel_execution(args.job_id, args.thing, force=args.force)
            _emit(args, {"jobId": args.job_id, "thing": args.thing, "canceled": True},
                  f"canceled {args.job_id} on {args.thing}")
        else:
            out = await cp.cancel_job(args.job_id, force=args.force)
            _emit(args, out, f"canceled job {args.job_id}")
    return 0


# ---------------------------------------------------------------------- rpc
async def _rpc(args: argparse.Namespace) -> int:
    from fleetdesk.cloud.rpc import Rpc

    call_args = _json_arg(args.args_json, "ARGS_JSON") if args.args_json else None
    conn = await _connect(args)
    rpc = Rpc(conn, timeout=args.timeout)
    try:
        await rpc.start()
        result = await rpc.call(args.thing, args.method, call_args)
        _emit(args, {"thing": args.thing, "method": args.method, "result": result},
              json.dumps(result, indent=2))
    finally:
        await rpc.stop()
        await conn.stop()
    return 0


# ---------------------------------------------------------------------- telemetry
def _telemetry(args: argparse.Namespace) -> int:
    from fleetdesk.store.telemetry import TelemetryStore, parse_time

    since = parse_time(args.since)
    until = parse_time(args.until) if args.until else None
    store = TelemetryStore(args.db) if args.db else TelemetryStore()
    try:
        if args.output:
            with open(args.output, "w", newline="") as f:
                n = store.export(args.thing, since, until, args.format, f)
            print(f"wrote {n} samples to {args.output}", file=sys.stderr)
        else:
            n = store.export(args.thing, since, until, args.format, sys.stdout)
        if n == 0:
            print(f"no telemetry stored for {args.thing!r} in that range", file=sys.stderr)
    finally:
        store.close()
    return 0


# ---------------------------------------------------------------------- parser
def _common(p: argparse.ArgumentParser, *, mqtt: bool = False) -> None:
    add_json(p)
    add_profile(p)
    if mqtt:
        p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the broker/reply")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the shadow, things, jobs, rpc and telemetry command families."""
    sh = subparsers.add_parser("shadow", help="read, change and watch device shadows")
    shs = sh.add_subparsers(dest="shadow_cmd", metavar="ACTION", required=True)
    for name, help_ in (("get", "print a shadow"), ("update", "change desired/reported"),
                        ("watch", "print delta and documents events until Ctrl-C")):
        p = shs.add_parser(name, help=help_)
        p.add_argument("thing")
        p.add_argument("--name", help="named shadow (default: the classic shadow)")
        _common(p, mqtt=True)
        if name == "update":
            p.add_argument("--desired", help="JSON for state.desired (null clears it)")
            p.add_argument("--reported", help="JSON for state.reported")
            p.add_argument("--doc", help='a whole update document {"state": {...}, "version": N}')
            p.add_argument("--version", type=int, help="only apply if the shadow is still at this version")
        if name == "watch":
            p.add_argument("--count", type=int, default=0, help="exit after N events")
        p.set_defaults(func=lambda a: _run(_shadow, a))

    th = subparsers.add_parser("things", help="list and create things")
    ths = th.add_subparsers(dest="things_cmd", metavar="ACTION", required=True)
    p = ths.add_parser("list", help="every thing in the registry")
    _common(p)
    p.set_defaults(func=lambda a: _run(_things, a))
    p = ths.add_parser("create", help="create a thing")
    p.add_argument("name")
    p.add_argument("--attr", action="append", help="attribute KEY=VALUE (repeatable)")
    p.add_argument("--group", action="append", help="add to this thing group (repeatable)")
    _common(p)
    p.set_defaults(func=lambda a: _run(_things, a))

    jb = subparsers.add_parser("jobs", help="create, list, describe and cancel jobs")
    jbs = jb.add_subparsers(dest="jobs_cmd", metavar="ACTION", required=True)
    p = jbs.add_parser("create", help="create a job for things and/or groups")
    p.add_argument("job_id")
    p.add_argument("--document", help="job document: a file or inline JSON")
    p.add_argument("--template", help="a template from resources/jobs/ (reboot, ota, config)")
    p.add_argument("--thing", action="append", help="target thing (repeatable)")
    p.add_argument("--group", action="append", help="target thing group (repeatable)")
    p.add_argument("--continuous", action="store_true", help="things added to the groups later get it too")
    p.add_argument("--description")
    p.add_argument("--rate", type=int, help="rollout: executions started per minute")
    p.add_argument("--abort-percent", type=float, help="cancel the job when this %% of executions failed")
    p.add_argument("--timeout-minutes", type=int, help="in-progress timeout per execution")
    _common(p)
    p.set_defaults(func=lambda a: _run(_jobs, a))
    p = jbs.add_parser("list", help="jobs, newest first")
    p.add_argument("--status", choices=("IN_PROGRESS", "CANCELED", "COMPLETED", "DELETION_IN_PROGRESS"))
    _common(p)
    p.set_defaults(func=lambda a: _run(_jobs, a))
    p = jbs.add_parser("describe", help="a job and (with --executions) its per-device states")
    p.add_argument("job_id")
    p.add_argument("--executions", action="store_true")
    _common(p)
    p.set_defaults(func=lambda a: _run(_jobs, a))
    p = jbs.add_parser("cancel", help="cancel a job, or one device's execution with --thing")
    p.add_argument("job_id")
    p.add_argument("--thing", help="cancel only this thing's execution")
    p.add_argument("--force", action="store_true", help="also cancel IN_PROGRESS executions")
    _common(p)
    p.set_defaults(func=lambda a: _run(_jobs, a))

    p = subparsers.add_parser("rpc", help="call a method on a device over MQTT (Sys.GetInfo, Config.Get, FS.List)")
    p.add_argument("thing")
    p.add_argument("method")
    p.add_argument("args_json", nargs="?", help="arguments as JSON")
    _common(p, mqtt=True)
    p.set_defaults(func=lambda a: _run(_rpc, a))

    tl = subparsers.add_parser("telemetry", help="stored telemetry history")
    tls = tl.add_subparsers(dest="telemetry_cmd", metavar="ACTION", required=True)
    p = tls.add_parser("export", help="write a thing's history as CSV or JSON")
    p.add_argument("thing")
    p.add_argument("--since", required=True, help="epoch seconds, ISO 8601, or an age: 15m, 2h, 7d")
    p.add_argument("--until", help="same forms (default: now)")
    p.add_argument("--format", choices=("csv", "json"), default="csv")
    p.add_argument("--output", "-o", help="file to write (default: stdout)")
    p.add_argument("--db", help="telemetry database (default: the app's)")
    p.set_defaults(func=_telemetry)
