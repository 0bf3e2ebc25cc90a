"""`fleetdesk ble scan | provision`: BLE field setup from the command line."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from fleetdesk.cli_common import add_json, add_profile, profile_from, run_async
from fleetdesk.errors import BleError


def register(subparsers: Any) -> None:
    """Add the `ble` command family."""
    ble = subparsers.add_parser("ble", help="find and provision boards over Bluetooth LE")
    sub = ble.add_subparsers(dest="ble_command", metavar="SUBCOMMAND", required=True)

    scan = sub.add_parser("scan", help="list boards advertising the Fleetdesk provisioning service")
    scan.add_argument("--timeout", type=float, default=5.0, help="seconds to scan (default 5)")
    scan.add_argument("--min-rssi", type=int, default=None, help="drop weaker boards (dBm)")
    state = scan.add_mutually_exclusive_group()
    state.add_argument("--unprovisioned", action="store_true", help="only boards without a cloud config")
    state.add_argument("--provisioned", action="store_true", help="only boards that already have one")
    scan.add_argument("--all-names", action="store_true", help="do not require the FD- name prefix")
    _common(scan)
    scan.set_defaults(func=_scan)

    prov = sub.add_parser("provision", help="send Wi-Fi, cloud endpoint and certificates to a board, then commit")
    prov.add_argument("address", metavar="ADDRESS", nargs="?", help="board address from `fleetdesk ble scan`")
    prov.add_argument("--batch", type=Path, metavar="FILE.csv",
                      help="many boards from a sheet: address,pop,wifi_ssid,wifi_password,thing (see fleetdesk.ble.batch)")
    prov.add_argument("--parallel", type=int, default=4, metavar="N", help="--batch: boards set up at once (default 4)")
    prov.add_argument("--results", type=Path, metavar="OUT.csv", help="--batch: write each row's outcome here")
    prov.add_argument("--pop", help="the board's proof-of-possession secret")
    prov.add_argument("--wifi-ssid")
    prov.add_argument("--wifi-pass-file", type=Path,
                      help="file holding the Wi-Fi password (keeps it out of shell history; --batch: the default)")
    who = prov.add_mutually_exclusive_group()
    who.add_argument("--thing", help="existing thing to provision as (a new certificate is made for it)")
    who.add_argument("--create-thing", nargs="?", const="", metavar="NAME",
                     help="create the thing (default name: the board's name, lowercased)")
    prov.add_argument("--ca", type=Path, help="root CA to install (default: sandbox CA / Amazon Root CA 1)")
    add_profile(prov)
    prov.add_argument("--scan-timeout", type=float, default=10.0)
    prov.add_argument("--wait-online", type=float, default=0, metavar="SECONDS",
                      help="after the commit, wait until the thing reports its shadow (0 = do not wait)")
    _common(prov)
    prov.set_defaults(func=_provision)

    esp = sub.add_parser("espidf", help="Wi-Fi provisioning of stock ESP-IDF boards (unified provisioning, BLE)")
    esp.add_argument("address", metavar="ADDRESS", help="board address (or name, e.g. PROV_A1B2C3)")
    esp.add_argument("--sec", type=int, choices=(0, 1, 2), default=None,
                     help="security scheme (default: what the board's proto-ver reports)")
    esp.add_argument("--pop", default="", help="proof-of-possession (sec1) / SRP password (sec2)")
    esp.add_argument("--username", default="wifiprov", help="SRP username (sec2)")
    esp.add_argument("--wifi-ssid", help="network to join (omit to only list networks)")
    esp.add_argument("--wifi-pass-file", type=Path, help="file holding the Wi-Fi password")
    esp.add_argument("--adapter", help="Bluetooth adapter on Linux, e.g. hci0")
    esp.add_argument("--scan-timeout", type=float, default=10.0, help="seconds to look for the board")
    esp.add_argument("--json", action="store_true", help="one JSON document per line on stdout")
    esp.set_defaults(func=_espidf)


def _common(p: argparse.ArgumentParser) -> None:
    add_json(p)
    p.add_argument("--virtual", action="store_true", help="talk to virtual boards instead of the radio")


def _backend_kind(args: argparse.Namespace) -> str | None:
    return "virtual" if args.virtual else None


def _scan(args: argparse.Namespace) -> int:
    from fleetdesk.ble.backends import ble_backends
    from fleetdesk.ble.scanner import scan

    scanner_backend, _ = ble_backends(_backend_kind(args))
    want = True if args.provisioned else False if args.unprovisioned else None
    found = asyncio.run(scan(args.timeout, backend=scanner_backend, name_prefix=None if args.all_names else "FD-",
                             min_rssi=args.min_rssi, provisioned=want))
    for item in found:
        if args.json:
            print(json.dumps(item.as_json()), flush=True)
        else:
            state = {True: "provisioned", False: "not provisioned", None: "state unknown"}[item.provisioned]
            print(f"{item.address}  {item.name:<12} {item.rssi:>4} dBm  {_bars(item.rssi)}  {state}")
    if not found and not args.json:
        print("no boards found (is the board in Config mode and close by?)", file=sys.stderr)
    return 0 if found else 3


def _bars(rssi: int) -> str:
    n = 4 if rssi >= -55 else 3 if rssi >= -67 else 2 if rssi >= -80 else 1
    return "▮" * n + "▯" * (4 - n)


def _provision(args: argparse.Namespace) -> int:
    return run_async(_provision_async(args))


async def _batch_async(args: argparse.Namespace) -> int:
    from fleetdesk.ble.batch import export_results, load_batch, run_batch

    password = _read_password(args.wifi_pass_file) if args.wifi_pass_file else None
    rows = load_batch(args.batch, default_password=password)
    t0 = time.monotonic()

    def on_row(r) -> None:
        if args.json:
            print(json.dumps(r.as_result()), flush=True)
        elif r.state in ("done", "failed"):
            print(f"line {r.row}: {r.state.upper():<6} {r.board or r.address}  {r.thing_name}  {r.reason}", flush=True)

    await run_batch(rows, profile_from(args), parallel=args.parallel, scan_timeout=args.scan_timeout,
                    wait_online=args.wait_online, kind=_backend_kind(args), on_row=on_row)
    if args.results:
        export_results(rows, args.results)
    done = sum(r.state == "done" for r in rows)
    summary = {"done": done, "failed": len(rows) - done, "seconds": round(time.monotonic() - t0, 2)}
    print(json.dumps({"batch": summary}) if args.json else
          f"{done}/{len(rows)} boards set up in {summary['seconds']} s", flush=True)
    return 0 if done == len(rows) else 1


def _read_password(path: Path) -> str:
    try:
        return path.read_text().rstrip("\r\n")
    except OSError as exc:
        raise BleError(f"cannot read the Wi-Fi password file {path}: {exc.strerror}",
                       "Put the password alone on the first line of a file readable by you.") from exc


async def _provision_async(args: argparse.Namespace) -> int:
    if args.batch is not None:
        return await _batch_async(args)
    missing = [flag for flag, value in (("ADDRESS", args.address), ("--pop", args.pop), ("--wifi-ssid", args.wifi_ssid),
                                        ("--wifi-pass-file", args.wifi_pass_file)) if not value]
    if args.thing is None and args.create_thing is None:
        missing.append("--thing or --create-thing")
    if missing:
        raise BleError(f"ble provision needs {', '.join(missing)}", "or give --batch FILE.csv for many boards")
    from fleetdesk.ble.backends import ble_backends
    from fleetdesk.ble.provision import cloud_target, provision
    from fleetdesk.ble.scanner import scan

    try:
        password = args.wifi_pass_file.read_text().rstrip("\r\n")
    except OSError as exc:
        raise BleError(f"cannot read the Wi-Fi password file {args.wifi_pass_file}: {exc.strerror}",
                       "Put the password alone on the first line of a file readable by you.") from exc
    scanner_backend, client_backend = ble_backends(_backend_kind(args))
    emit = _emitter(args.json)
    emit("scan", f"looking for {args.address}")
    found = await scan(args.scan_timeout, backend=scanner_backend, name_prefix=None,
                       stop_when=lambda f: f.address.lower() == args.address.lower())
    match = next((f for f in found if f.address.lower() == args.address.lower()), None)
    if match is None:
        raise BleError(f"board {args.address} is not advertising",
                       "Check the address with `fleetdesk ble scan`; the board must be in Config mode.")
    profile = profile_from(args)
    thing = args.thing or args.create_thing or match.name.lower()
    emit("cloud", f"preparing thing {thing} and its certificate in profile {profile.name}")
    target = await asyncio.to_thread(cloud_target, profile, thing, create=args.thing is None, ca_file=args.ca)

    from fleetdesk.progress import bars

    with bars(args.json) as shown:  # a bar per file sent, in a terminal only
        def progress(name: str, done: int, total: int) -> None:
            if args.json:
                print(json.dumps({"progress": {"file": name, "sent": done, "total": total}}), flush=True)
            else:
                shown.update(name, stage="sending" if done < total else "sent",
                             percent=100.0 * done / total if total else 100.0)

        result = await provision(match.device, args.pop, args.wifi_ssid, password, target, backend=client_backend,
                                 on_step=emit, progress=progress)
    online = None
    if args.wait_online > 0:
        from fleetdesk.ble.provision import wait_online

        emit("online", f"waiting up to {args.wait_online:.0f} s for {thing}")
        reported = await asyncio.to_thread(wait_online, profile, thing, args.wait_online)
        online = reported.get("firmware_version", True)
    if args.json:
        print(json.dumps({"ok": True, "thing": thing, "endpoint": f"{target.endpoint}:{target.port}",
                          "committed": bool(result.get("committed")), "online": online}), flush=True)
    else:
        print(f"committed: {match.name} will reboot and connect as {thing} to {target.endpoint}:{target.port}")
        if online:
            print(f"{thing} is online (firmware {online})")
    return 0


def _espidf(args: argparse.Namespace) -> int:
    return run_async(_espidf_async(args))


async def _espidf_async(args: argparse.Namespace) -> int:
    from bleak import BleakScanner

    from fleetdesk.ble.espidf import ESP_SERVICE_UUID, EspProvClient

    kw: dict[str, Any] = {"bluez": {"adapter": args.adapter}} if args.adapter else {}
    want = args.address.lower()
    device = await BleakScanner.find_device_by_filter(
        lambda d, a: want in (d.address.lower(), (a.local_name or d.name or "").lower()),
        timeout=args.scan_timeout, service_uuids=[ESP_SERVICE_UUID], **kw)
    if device is None:
        raise BleError(f"no ESP-IDF provisioning board {args.address} advertising",
                       "Put the board in provisioning mode (fresh or after a reset of its Wi-Fi config).")
    emit = _emitter(args.json)
    async with EspProvClient(device, security=args.sec, pop=args.pop, username=args.username, **kw) as esp:
        emit("session", f"security {esp.security} session with {device.name or device.address}")
        nets = await esp.scan_wifi()
        for n in nets:
            if args.json:
                print(json.dumps({"network": n}), flush=True)
            else:
                print(f"  {n['ssid']:<32} {n['rssi']:>4} dBm  ch {n['channel']}")
        if not args.wifi_ssid:
            return 0
        if args.wifi_pass_file is None:
            raise BleError("--wifi-pass-file is needed with --wifi-ssid", "Put the password alone in a file.")
        password = args.wifi_pass_file.read_text().rstrip("\r\n")
        await esp.set_wifi_config(args.wifi_ssid, password)
        await esp.apply_wifi_config()
        emit("wifi", f"applied {args.wifi_ssid}, waiting for the board to connect")
        status = await esp.wait_connected()
        if args.json:
            print(json.dumps({"ok": True, **status}), flush=True)
        else:
            print(f"connected to {status.get('ssid')} with IP {status.get('ip')}")
    return 0


def _emitter(as_json: bool):
    def emit(step: str, detail: str) -> None:
        if as_json:
            print(json.dumps({"step": step, "detail": detail}), flush=True)
        else:
            print(f"[{step}] {detail}", flush=True)
    return emit
