"""Station controller: the state behind the Stations page, free of Qt.

It watches ports (hot-plug), keeps one `TileState` per slot, runs a `BoardPipeline` per
START in its own thread, counts PASS/FAIL per slot and in total, auto-starts on plug-in in
factory mode, and refuses settings changes while boards are flashing. Slots are keyed by
the USB location (``PortInfo.slot_key``) so a label stays with the physical place when
port names shuffle. Listeners are called on worker threads: the GUI hands them to
gui/bridge.py and repaints on a timer.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from fleetdesk.boards.events import BoardEvent
from fleetdesk.boards.ports import PortInfo, PortWatcher, list_ports, may_probe, parse_usb_id
from fleetdesk.boards.station import BoardResult, Station, StationSettings
from fleetdesk.errors import BoardError, FleetdeskError
from fleetdesk.paths import config_dir


@dataclass
class TileState:
    """What one tile shows."""

    slot: str
    port: str
    label: str = ""
    present: bool = True
    probe_allowed: bool = True
    usb_id: str = ""  # VID:PID (hex), "" for virtual boards and non-USB ports
    chip: str | None = None
    mac: str | None = None
    stage: str = ""
    percent: int = 0
    waiting_s: int | None = None  # seconds left for the board to come online (the tile's countdown)
    state: str = "idle"  # idle | running | PASS | FAIL | STOPPED | HOLD (the operator must decide: restore offered)
    message: str = ""
    details: list = field(default_factory=list)
    passed: int = 0
    failed: int = 0
    started_at: float | None = None
    last_result: BoardResult | None = None

    @property
    def running(self) -> bool:
        return self.state == "running"

    def apply(self, ev: BoardEvent) -> None:
        """Take in one of the board's pipeline events (stage, progress, chip, countdown, log)."""
        if ev.stage is not None and ev.stage != "done":
            self.stage = ev.stage
            self.waiting_s = None
        if ev.waiting_s is not None:
            self.waiting_s = int(ev.waiting_s)
        if ev.percent is not None:
            self.percent = int(ev.percent)
        if ev.info is not None:
            self.chip, self.mac = ev.chip, ev.mac
        if ev.log is not None:
            self.details.append(ev.log)
            del self.details[:-200]


def _slot_labels_path() -> Path:
    return config_dir() / "station-slots.json"


def _allowed_usb_path() -> Path:
    return config_dir() / "station-usb-allow.json"


class StationController:
    """Everything the Stations page needs, callable from the Qt thread.

    Args:
        settings: initial station settings (bundle may be empty until chosen).
        on_change: ``fn(slot)`` after any change to that slot's TileState ("*" = totals/settings).
        lister: port source (default: pyserial + virtual registry).
        cloud, db: passed to the Station (tests and the GUI's active profile).
    """

    def __init__(self, settings: StationSettings, on_change: Callable[[str], None] | None = None, *,
                 lister: Callable[[], list[PortInfo]] | None = None, cloud=None, db=None,
                 poll_interval: float = 0.25) -> None:
        self.settings = settings
        self.on_change = on_change or (lambda slot: None)
        self.tiles: dict[str, TileState] = {}
        self.auto_start = False
        self._lister = lister or (lambda: list_ports(include_serial=False))
        self._cloud, self._db = cloud, db
        self._station: Station | None = None
        self._lock = threading.RLock()
        self._threads: dict[str, threading.Thread] = {}
        self._pool_waiting: set[str] = set()  # slots waiting for a free pooled certificate
        self.labels: dict[str, str] = self._load_labels()
        self.settings.allowed_usb = sorted({*settings.allowed_usb, *self._load_allowed()})
        self._watcher = PortWatcher(self._on_ports, interval=poll_interval, lister=self._lister)

    # --- lifecycle -------------------------------------------------------------------
    def start_watching(self) -> None:
        self._watcher.poll()
        self._watcher.start()

    def close(self) -> None:
        self._watcher.stop()
        self.stop()
        for t in list(self._threads.values()):
            t.join(timeout=30)
        if self._station is not None:
            self._station.close()
        from fleetdesk.boards.flasher import POOL

        POOL.close()

    # --- settings --------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return any(t.running for t in self.tiles.values())

    def apply_settings(self, settings: StationSettings) -> None:
        """Change the locked settings (refused while any board is flashing)."""
        if self.busy:
            raise BoardError("settings are locked while boards are flashing", "press STOP or wait for the boards")
        with self._lock:
            if self._station is not None:
                self._station.close()
            self._station = None
            self.settings = settings
        self.on_change("*")

    def station(self) -> Station:
        with self._lock:
            if self._station is None:
                if not self.settings.bundle:
                    raise BoardError("no firmware bundle chosen", "press Built-in firmware, or Browse… for a bundle "
                                     "(Station settings → Firmware)")
                self._station = Station(self.settings, cloud=self._cloud, db=self._db)
                self._station.recover()
                from fleetdesk.boards.flasher import POOL

                POOL.prewarm(min(16, max(1, len(self.tiles))))  # a warm esptool worker per slot
            return self._station

    # --- slots ------------------------------------------------------------------------
    def _line_station(self) -> str:
        import socket

        return self.settings.station or socket.gethostname()

    def _load_labels(self) -> dict[str, str]:
        from fleetdesk.store.ledger import configured_ledger

        if configured_ledger():  # the line's ledger keeps every station's slot labels
            from fleetdesk.store.production import ProductionDB

            db = ProductionDB()
            try:
                return db.slot_labels(self._line_station())
            finally:
                db.close()
        try:
            return json.loads(_slot_labels_path().read_text())
        except (OSError, ValueError):
            return {}

    def _load_allowed(self) -> list[str]:
        try:
            return [a for a in json.loads(_allowed_usb_path().read_text()) if isinstance(a, str)]
        except (OSError, ValueError, TypeError):
            return []

    def allow_usb(self, slot: str) -> str:
        """The operator vouches for this slot's USB id (an ESP board behind an unusual bridge):
        probe it from now on, here and on every later start. Returns the VID:PID added."""
        tile = self.tiles.get(slot)
        if tile is None or not tile.usb_id:
            raise BoardError("this port has no USB id to allow", "only USB serial devices can be allowed")
        usb_id = tile.usb_id
        saved = sorted({*self._load_allowed(), usb_id})
        _allowed_usb_path().parent.mkdir(parents=True, exist_ok=True)
        tmp = _allowed_usb_path().with_suffix(".tmp")
        tmp.write_text(json.dumps(saved, indent=1))
        tmp.replace(_allowed_usb_path())
        with self._lock:
            self.settings.allowed_usb = sorted({*self.settings.allowed_usb, usb_id})
            if self._station is not None:
                self._station.settings.allowed_usb = self.settings.allowed_usb
            for t in self.tiles.values():
                if t.usb_id == usb_id and not t.probe_allowed:
                    t.probe_allowed, t.stage, t.message = True, "ready", f"USB id {usb_id} allowed by the operator"
                    self.on_change(t.slot)
        return usb_id

    def set_label(self, slot: str, label: str) -> None:
        """Name a slot (saved; shown on its tile across restarts and re-enumeration)."""
        self.labels[slot] = label
        from fleetdesk.store.ledger import configured_ledger

        if configured_ledger():
            from fleetdesk.store.production import ProductionDB

            db = ProductionDB()
            try:
                db.set_slot_label(self._line_station(), slot, label)
            finally:
                db.close()
        tmp = _slot_labels_path().with_suffix(".tmp")
        tmp.write_text(json.dumps(self.labels, indent=1))
        tmp.replace(_slot_labels_path())
        if slot in self.tiles:
            self.tiles[slot].label = label
            self.on_change(slot)

    def _on_ports(self, added: list[PortInfo], removed: list[PortInfo]) -> None:
        allowed = [parse_usb_id(a) for a in self.settings.allowed_usb]
        start = []
        with self._lock:
            for p in removed:
                tile = self.tiles.get(p.slot_key)
                if tile is not None and tile.port == p.device:
                    tile.present = False
                    if not tile.running:
                        tile.stage = "unplugged"
                    self.on_change(tile.slot)
            for p in added:
                tile = self.tiles.get(p.slot_key)
                if tile is None:
                    tile = TileState(p.slot_key, p.device, label=self.labels.get(p.slot_key, ""))
                    self.tiles[p.slot_key] = tile
                tile.port, tile.present = p.device, True  # same place, maybe a new port name
                tile.probe_allowed, tile.usb_id = may_probe(p, allowed), p.usb_id
                tile.chip, tile.mac = p.chip or tile.chip, p.mac or tile.mac
                if not tile.probe_allowed:
                    tile.message = (f"not a known ESP USB bridge ({p.usb_id or p.kind}): never probed"
                                    + ("; press Allow if it is an ESP board" if p.usb_id else ""))
                elif not tile.running:  # the last board's result and reason stay until the next START
                    tile.stage = "ready"
                    if tile.state not in ("PASS", "FAIL", "HOLD", "STOPPED"):
                        tile.message = ""
                self.on_change(tile.slot)
                if self.auto_start and tile.probe_allowed and not tile.running:
                    start.append(tile.slot)
        for slot in start:
            self.start(slot)

    # --- run ----------------------------------------------------------------------------
    def start(self, slot: str, overrides: dict | None = None) -> bool:
        """START one slot; False when it is busy, gone, not probe-able or settings are missing.

        Args:
            overrides: settings for this board only (see `Station.run_one`).
        """
        with self._lock:
            tile = self.tiles.get(slot)
            if tile is None or tile.running or not tile.present or not tile.probe_allowed:
                return False
            from fleetdesk.boards.certpool import PoolEmpty

            try:
                station = self.station()
                station.check_ready()  # e.g. an empty offline pool stops the station, not the board
                if station.pool is not None and station.pool.level() <= self._pool_reserved(station):
                    raise PoolEmpty("every free certificate is promised to a running board", "")
            except PoolEmpty:  # the board waits for a certificate (it starts after a refill in factory mode)
                tile.stage, tile.message = "waiting", "waiting: certificate pool empty — refill it"
                self._pool_waiting.add(slot)
                self.on_change(slot)
                return False
            except FleetdeskError as exc:
                tile.message = exc.message  # a station-level stop, not a failed board
                self.on_change(slot)
                return False
            self._pool_waiting.discard(slot)
            tile.state, tile.stage, tile.percent, tile.message = "running", "detect", 0, ""
            tile.details, tile.started_at = [], time.monotonic()
            t = threading.Thread(target=self._run, args=(station, tile, overrides), daemon=True,
                                 name=f"station {slot}")
            self._threads[slot] = t
        self.on_change(slot)
        t.start()
        return True

    def _pool_reserved(self, station: Station) -> int:
        """Running boards that will take a pooled certificate and have not taken it yet."""
        with station._lock:
            pipes = list(station.pipelines.values())
        took = {p.port for p in pipes if p._pooled is not None} | {p.slot for p in pipes if p._pooled is not None}
        return sum(1 for t in self.tiles.values() if t.running and t.port not in took and t.slot not in took)

    def _start_waiting(self) -> None:
        """Boards waiting for a pooled certificate start when one is free (factory mode)."""
        if not self.auto_start:
            return
        for slot in sorted(self._pool_waiting):
            tile = self.tiles.get(slot)
            if tile is None or not tile.present:
                self._pool_waiting.discard(slot)
            elif not self.start(slot):
                break

    def restore_identity(self, slot: str) -> bool:
        """The operator's answer to a restore offer: write the identity on file back."""
        return self.start(slot, {"restore_identity": True, "factory_reset": False})

    def new_identity(self, slot: str) -> bool:
        """The other answer: give the board a new identity (the one on file stays in the DB)."""
        return self.start(slot, {"factory_reset": True, "restore_identity": False})

    def start_all(self) -> int:
        """START every present, idle, probe-able slot; returns how many started. With the offline
        pool, no more boards than it has certificates: the rest wait (not a FAIL each)."""
        limit = None
        try:
            station = self.station()
            limit = station.pool.level() if station.pool is not None else None
        except FleetdeskError:
            pass  # start() shows the reason
        started = 0
        for slot in list(self.tiles):
            tile = self.tiles[slot]
            if limit is not None and started >= limit and tile.present and tile.probe_allowed and not tile.running:
                tile.message = "not started: the certificate pool ran out — refill it, then press START"
                self.on_change(slot)
                continue
            started += self.start(slot)
        return started

    def stop(self, slot: str | None = None) -> None:
        """STOP one slot (or all): cancels at the next progress tick; the port stays usable."""
        station = self._station
        if station is None:
            return
        with station._lock:
            pipes = dict(station.pipelines)
        for port, pipe in pipes.items():
            if slot is None or self.tiles.get(slot, TileState("", "")).port in (port, pipe.port):
                pipe.cancel()

    def _run(self, station: Station, tile: TileState, overrides: dict | None = None) -> None:
        def on_event(port: str, ev: BoardEvent) -> None:
            tile.apply(ev)
            self.on_change(tile.slot)

        try:
            res = station.run_one(tile.port, on_event, slot=tile.slot, overrides=overrides)
        except Exception as exc:  # noqa: BLE001 - shown on the tile, never a silent thread death
            res = BoardResult(tile.port, error=f"{type(exc).__name__}: {exc}", advice=str(exc))
        with self._lock:
            tile.last_result = res
            tile.state = res.result
            tile.chip, tile.mac = res.chip or tile.chip, res.mac or tile.mac
            tile.message = res.summary()
            if res.result == "PASS":
                tile.passed += 1
                tile.percent = 100
            elif res.error.startswith("cancelled by the operator"):  # a STOP is not a failed board
                tile.state = "STOPPED"
            elif res.restore_offered:  # not a failed board: a question for the operator
                tile.state = "HOLD"
            else:
                tile.failed += 1
            tile.stage, tile.waiting_s = "done", None
            tile.details = tile.details + ["--- console ---"] + list(res.console_tail)
            self._threads.pop(tile.slot, None)
        self.on_change(tile.slot)
        self.on_change("*")
        self._start_waiting()  # a certificate given back (or this board's done): the next board may start

    def export(self, slot: str, path) -> Path:
        """Per-board zip (attempt, journal, console, esptool trace; never keys) of the slot's last attempt."""
        from fleetdesk.boards.export import export_attempt

        tile = self.tiles.get(slot)
        if tile is None or tile.last_result is None or tile.last_result.attempt_id is None:
            raise BoardError("this slot has no finished attempt to export", "flash a board first")
        return export_attempt(self.station().db, tile.last_result.attempt_id, path)

    def export_records(self, path) -> int:
        """The production record (every attempt) as CSV at ``path``; returns the rows written."""
        from fleetdesk.store.production import ProductionDB

        db = self._db if self._db is not None else (self._station.db if self._station is not None else
                                                    ProductionDB(self.settings.db_path or None))
        try:
            return db.export_csv(path)
        except OSError as exc:
            raise BoardError(f"cannot write {path}: {exc.strerror or exc}", "choose another file") from exc

    def start_refill(self, count: int, on_done: Callable[[bool, str], None]) -> threading.Thread:
        """:meth:`refill_pool` on a worker thread; ``on_done(ok, message)`` from that thread."""

        def work() -> None:
            try:
                added = self.refill_pool(count)
                on_done(True, f"Certificate pool refilled: {added} added, {self.pool_level()} free")
            except FleetdeskError as exc:
                on_done(False, f"Could not refill the pool: {exc}")
            except Exception as exc:  # noqa: BLE001 - said to the operator, never a silent thread death
                on_done(False, f"Could not refill the pool: {type(exc).__name__}: {exc}")

        t = threading.Thread(target=work, daemon=True, name="pool refill")
        t.start()
        return t

    def refill_pool(self, count: int = 16) -> int:
        """While online: mint certificates until ``count`` are free in the offline pool (blocking;
        call it off the UI thread). Returns how many were added."""
        from fleetdesk.boards.certpool import CertPool
        from fleetdesk.cloud.backend import CloudTarget
        from fleetdesk.config import Profile

        cloud = self._cloud
        if cloud is None:
            s = self.settings
            cloud = CloudTarget.from_profile(s.profile or Profile(), s.sandbox_state_dir)
        station = self._station
        pool = station.pool if station is not None and station.pool is not None else CertPool()
        added = pool.refill(cloud, count)
        self.on_change("*")
        self._start_waiting()
        return added

    def pool_level(self) -> int | None:
        """Free certificates in the offline pool (None when the station does not use it)."""
        station = self._station
        if station is not None and station.pool is not None:
            return station.pool.level()
        if self.settings.offline_pool:
            from fleetdesk.boards.certpool import CertPool

            return CertPool().level()
        return None

    def totals(self) -> dict:
        tiles = list(self.tiles.values())
        out = {"PASS": sum(t.passed for t in tiles), "FAIL": sum(t.failed for t in tiles),
               "running": sum(1 for t in tiles if t.running), "slots": len(tiles),
               "decide": sum(1 for t in tiles if t.state == "HOLD")}
        station = self._station
        if station is not None and station.pool is not None:
            out["pool"] = station.pool.level()
        return out

    def wait_idle(self, timeout: float = 120) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.busy:
                return True
            time.sleep(0.05)
        return False


def settings_with(settings: StationSettings, **changes) -> StationSettings:
    """A copy of ``settings`` with ``changes`` (settings objects are replaced, never mutated)."""
    return replace(settings, **changes)
