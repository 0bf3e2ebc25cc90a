"""Batch BLE field setup: many boards from one CSV sheet, several at once, a state per row.

The sheet (CSV with a header; one row per board)::

    address,pop,wifi_ssid,wifi_password,thing
    24:0A:C4:A0:B0:C2,pop-7f3a,fieldnet,secret123,greenhouse-7
    FD-A0B0*,,fieldnet,secret123,fd-{mac}

``address`` is a BLE address or a name pattern (``FD-A0B0*``: the first unclaimed board whose
advertised name matches); ``pop`` empty = the board was flashed without identity (its MAC);
``thing`` is a name or a template (``{mac}`` = the board's base MAC, ``{name}``), empty =
``fd-{mac}`` as the flash station names things. ``wifi_password`` may be left out when the
whole batch uses one (``default_password``).

:func:`run_batch` scans once for every row, then provisions up to ``parallel`` boards at a
time (one BLE connection each, as many as the adapter allows), each through
:func:`fleetdesk.ble.provision.provision`; a failed row keeps its reason and can be run again
(:func:`pending`). :func:`export_results` writes the outcome without secrets.
"""

from __future__ import annotations

import asyncio
import csv
import fnmatch
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from fleetdesk.ble.naming import base_mac, factory_pop
from fleetdesk.errors import BleError, FleetdeskError

COLUMNS = ("address", "pop", "wifi_ssid", "wifi_password", "thing")
REQUIRED = ("address", "wifi_ssid")
STATES = ("pending", "scanning", "connect", "wifi", "cloud", "certificates", "commit", "online", "done", "failed")
RESULT_COLUMNS = ("row", "address", "board", "thing", "state", "reason", "seconds")


@dataclass
class BatchRow:
    """One board of the sheet and how far it got."""

    row: int  # line in the sheet (header = 1)
    address: str  # BLE address or name pattern
    pop: str = field(default="", repr=False)
    wifi_ssid: str = ""
    wifi_password: str = field(default="", repr=False)
    thing: str = ""
    state: str = "pending"
    reason: str = ""
    board: str = ""  # the board it matched: "FD-A0B0C0 (24:0A:C4:A0:B0:C2)"
    thing_name: str = ""  # the thing it was set up as
    seconds: float = 0.0
    device: Any = field(default=None, repr=False)

    @property
    def is_pattern(self) -> bool:
        return base_mac(self.address) is None

    def as_result(self) -> dict[str, Any]:
        return {"row": self.row, "address": self.address, "board": self.board, "thing": self.thing_name,
                "state": self.state, "reason": self.reason, "seconds": round(self.seconds, 2)}


def load_batch(path: str | Path, default_password: str | None = None) -> list[BatchRow]:
    """Read a batch sheet.

    Raises:
        BleError: unreadable file, a missing column, or a row without what it needs (the
            message names the line and the column).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise BleError(f"cannot read the batch sheet {path}: {exc}", "give a CSV file (UTF-8) with a header row") from exc
    reader = csv.DictReader(text.splitlines())
    header = [h.strip().lower() for h in reader.fieldnames or []]
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise BleError(f"{path.name}: no {', '.join(missing)} column (the header is {', '.join(header) or 'empty'})",
                       f"the first line names the columns: {','.join(COLUMNS)}")
    rows = []
    for i, raw in enumerate(reader, start=2):
        rec = {(k or "").strip().lower(): (v or "").strip() for k, v in raw.items()}
        if not any(rec.values()):
            continue
        for col in REQUIRED:
            if not rec.get(col):
                raise BleError(f"{path.name} line {i}: {col} is empty", f"fill in {col} or delete the line")
        password = rec.get("wifi_password") or default_password
        if password is None:
            raise BleError(f"{path.name} line {i}: no wifi_password",
                           "add a wifi_password column, or give one password for the batch (--wifi-pass-file)")
        rows.append(BatchRow(i, rec["address"], rec.get("pop", ""), rec["wifi_ssid"], password, rec.get("thing", "")))
    if not rows:
        raise BleError(f"{path.name} has no boards", "add one line per board under the header")
    return rows


def pending(rows: list[BatchRow]) -> list[BatchRow]:
    """The rows still to do (never started, or failed): what Resume runs again."""
    return [r for r in rows if r.state != "done"]


def export_results(rows: list[BatchRow], path: str | Path) -> Path:
    """Write each row's outcome as CSV (no PoP, no password)."""
    path = Path(path)
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(RESULT_COLUMNS))
        w.writeheader()
        for r in rows:
            w.writerow(r.as_result())
    return path


def _thing_for(row: BatchRow, found: Any) -> str:
    from fleetdesk.boards.identity import thing_name_for

    mac = base_mac(found.address) or ""
    template = row.thing or "fd-{mac}"
    if "{name}" in template:
        template = template.replace("{name}", found.name.lower())
    return thing_name_for(template, mac) if "{" in template else template


def match(rows: list[BatchRow], found: list[Any]) -> None:
    """Give each row its board: an exact address, else the first unclaimed name match."""
    claimed: set[str] = set()
    by_address = {f.address.upper(): f for f in found}
    for r in rows:
        f = None if r.is_pattern else by_address.get(r.address.upper())
        if f is not None:
            r.device = f
            claimed.add(f.address)
    for r in rows:
        if r.is_pattern and r.device is None:
            f = next((f for f in sorted(found, key=lambda x: x.name)
                      if f.address not in claimed and fnmatch.fnmatchcase(f.name, r.address)), None)
            if f is not None:
                r.device = f
                claimed.add(f.address)


async def run_batch(rows: list[BatchRow], profile: Any, *, parallel: int = 4, scan_timeout: float = 15.0,
                    wait_online: float = 0.0, kind: str | None = None,
                    on_row: Callable[[BatchRow], None] | None = None) -> list[BatchRow]:
    """Provision ``rows`` (those not done): one scan, then ``parallel`` boards at a time.

    Args:
        profile: the cloud profile things and certificates are made in.
        parallel: boards set up at the same time (BLE connections held at once).
        scan_timeout: seconds to look for the boards (ends early once all are seen).
        wait_online: after a commit, wait this long for the thing to come online (0 = no).
        kind: the BLE backend ("virtual"/"system"; None = the profile's Bluetooth setting).
        on_row: called (on the loop) whenever a row's state changes.

    Returns:
        ``rows``, each ``done`` or ``failed`` with its reason.
    """
    from fleetdesk.ble.backends import ble_backends
    from fleetdesk.ble.provision import cloud_target, provision
    from fleetdesk.ble.provision import wait_online as wait_thing_online
    from fleetdesk.ble.scanner import scan

    todo = pending(rows)
    notify = on_row or (lambda r: None)
    scanner_backend, client_backend = ble_backends(kind, profile)
    for r in todo:
        r.state, r.reason, r.device = "scanning", "", None
        notify(r)
    addresses = {r.address.upper() for r in todo if not r.is_pattern}
    patterns = [r.address for r in todo if r.is_pattern]
    seen: dict[str, Any] = {}

    def all_seen(_item: Any) -> bool:
        names = [f.name for f in seen.values()]
        return addresses <= set(seen) and all(sum(fnmatch.fnmatchcase(n, p) for n in names) >= patterns.count(p)
                                              for p in set(patterns))

    def found(item: Any) -> None:
        seen[item.address.upper()] = item

    await scan(scan_timeout, backend=scanner_backend, name_prefix=None, on_found=found, stop_when=all_seen)
    match(todo, list(seen.values()))
    gate = asyncio.Semaphore(max(1, parallel))

    async def one(r: BatchRow) -> None:
        if r.device is None:
            r.state = "failed"
            r.reason = (f"no board advertising as {r.address}" if not r.is_pattern else
                        f"no unclaimed board named like {r.address}") + " (is it in Config mode and close by?)"
            notify(r)
            return
        async with gate:
            t0 = time.monotonic()
            f = r.device
            r.board = f"{f.name} ({f.address})"
            try:
                r.thing_name = _thing_for(r, f)
                pop = r.pop or factory_pop(f.address) or ""
                r.state = "cloud"
                notify(r)
                target = await asyncio.to_thread(cloud_target, profile, r.thing_name, create=True)

                def step(name: str, _detail: str) -> None:
                    r.state = "certificates" if name in ("ca", "cert", "key") else name
                    notify(r)

                await provision(f.device, pop, r.wifi_ssid, r.wifi_password, target, backend=client_backend,
                                on_step=step)
                if wait_online > 0:
                    r.state = "online"
                    notify(r)
                    await asyncio.to_thread(wait_thing_online, profile, r.thing_name, wait_online)
                r.state, r.reason = "done", ""
            except FleetdeskError as exc:
                r.state, r.reason = "failed", f"{r.state}: {exc.message}" + (f" → {exc.advice}" if exc.advice else "")
            except Exception as exc:  # noqa: BLE001 - one board's surprise must not stop the others
                r.state, r.reason = "failed", f"{r.state}: {type(exc).__name__}: {exc}"
            finally:
                r.seconds = time.monotonic() - t0
                notify(r)

    await asyncio.gather(*(one(r) for r in todo))
    return rows

