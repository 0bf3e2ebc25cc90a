"""``fleetdesk fleet list|watch``: the fleet table in a terminal.

``list`` prints every thing once: online (presence), last seen, firmware and shadow version
(from each classic shadow), last temperature/humidity (live, or the app's stored history),
groups and attributes. ``watch`` keeps a session open and prints the rows that changed,
batched per tick (``--interval``), never per message — the same model the GUI uses.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

COLUMNS = ("name", "online", "last_seen", "firmware", "shadow_version", "temperature", "humidity", "groups")


def _fmt_row(r: dict) -> str:
    online = {True: "online", False: "offline", None: "?"}[r["online"]]
    seen = time.strftime("%H:%M:%S", time.localtime(r["last_seen"])) if r["last_seen"] else "-"
    t = f"{r['temperature']:.1f}C" if r["temperature"] is not None else "-"
    h = f"{r['humidity']:.0f}%" if r["humidity"] is not None else "-"
    v = f"v{r['shadow_version']}" if r["shadow_version"] is not None else "-"
    return (f"{r['name']:<24} {online:<7} {seen:<8} {r['firmware'] or '-':<10} {v:<6} {t:>7} {h:>5} "
            f"{','.join(r['groups'])}")


def _header() -> str:
    return f"{'THING':<24} {'STATE':<7} {'SEEN':<8} {'FIRMWARE':<10} {'SHADOW':<6} {'TEMP':>7} {'HUM':>5} GROUPS"


async def _open(args: argparse.Namespace):
    from fleetdesk.cli_common import profile_from
    from fleetdesk.cloud.session import CloudSession, app_settings
    from fleetdesk.store.telemetry import TelemetryStore

    profile = profile_from(args)
    session = CloudSession(profile, settings=app_settings(profile, ephemeral=True), store=False)
    try:
        await session.start(connect_timeout=args.timeout, use_index=False)  # watch every device, as asked
        if args.groups:
            await session.refresh_groups()
        if not args.no_shadows:
            await session.load_shadows()
        # last readings from the app's history, if any (live telemetry overrides them)
        try:
            store = TelemetryStore()
            try:
                for name, s in store.latest().items():
                    t = session.fleet.things.get(name)
                    if t is not None and t.sample_ts is None:
                        t.temperature, t.humidity, t.sample_ts = s.temperature, s.humidity, s.ts
                        t.last_seen = max(t.last_seen or 0, s.ts)
            finally:
                store.close()
        except Exception:  # noqa: BLE001 - history is optional here
            pass
    except BaseException:
        await session.stop()
        raise
    return session


async def _list(args: argparse.Namespace) -> int:
    session = await _open(args)
    try:
        rows = session.fleet.rows(args.filter or "", args.group)
    finally:
        await session.stop()
    if args.json:
        for r in rows:
            print(json.dumps(r), flush=True)
    else:
        print(_header())
        for r in rows:
            print(_fmt_row(r))
        s = session.fleet.summary()
        print(f"{len(rows)} shown; {s['online']} online, {s['offline']} offline, {s['unknown']} unknown",
              file=sys.stderr)
    return 0


async def _watch(args: argparse.Namespace) -> int:
    session = await _open(args)
    fleet = session.fleet
    ticks = 0
    try:
        if not args.json:
            print(_header())
        fleet.take_changes()
        for r in fleet.rows(args.filter or "", args.group):  # initial table
            print(json.dumps(r) if args.json else _fmt_row(r), flush=True)
        while not args.count or ticks < args.count:
            await asyncio.sleep(args.interval)
            ticks += 1
            changed = fleet.take_changes()
            if not changed:
                continue
            for r in fleet.rows(args.filter or "", args.group):
                if r["name"] in changed:
                    print(json.dumps(r) if args.json else _fmt_row(r), flush=True)
            if args.diagnostics and fleet.diagnostics:
                print(json.dumps({"diagnostics": dict(fleet.diagnostics)}) if args.json
                      else f"# diagnostics {dict(fleet.diagnostics)}", flush=True)
    finally:
        await session.stop()
    return 0


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="one JSON object per thing per line")
    p.add_argument("--profile", help="profile name (default: the active one)")
    p.add_argument("--filter", help="substring of name, firmware, group or attribute values")
    p.add_argument("--group", help="only things in this thing group (implies --groups)")
    p.add_argument("--groups", action="store_true", help="load thing groups (one call per group)")
    p.add_argument("--no-shadows", action="store_true", help="skip reading every shadow (faster)")
    p.add_argument("--timeout", type=float, default=15.0, help="seconds to wait for the broker")


def register(fleet_sub: argparse._SubParsersAction) -> None:
    """Add ``fleet list`` and ``fleet watch``."""
    from fleetdesk.cloud.cli import _run

    p = fleet_sub.add_parser("list", help="every thing: online, firmware, shadow version, last reading")
    _common(p)
    p.set_defaults(func=lambda a: _run(_list, _fix(a)))
    p = fleet_sub.add_parser("watch", help="print rows as they change (batched per tick) until Ctrl-C")
    _common(p)
    p.add_argument("--interval", type=float, default=1.0, help="seconds per refresh tick")
    p.add_argument("--count", type=int, default=0, help="stop after N ticks")
    p.add_argument("--diagnostics", action="store_true", help="also print malformed-payload counters")
    p.set_defaults(func=lambda a: _run(_watch, _fix(a)))


def _fix(args: argparse.Namespace) -> argparse.Namespace:
    if args.group:
        args.groups = True
    return args
