"""Production record: one SQLite (WAL) row per flash attempt, the step journal, known devices.

Tables:
    attempts   one row per finished attempt (PASS/FAIL), written atomically at the end, so a
               crash never leaves a half-written row.
    runs       one row per pipeline run, created at the start; ``journal`` holds its steps
               (detect -> identity -> write -> verify -> boot -> online). A run without
               ``finished_at`` after a restart is one the station must recover.
    devices    every MAC ever flashed: its thing, certificate, product, PoP secret reference.
    backups    identity partitions read back from boards before an erase (restorable). They
               hold the device's private key, so ``data`` is sealed with the station data key
               (fleetdesk.store.secretbox, ``format`` = "fdsb1"); rows from before that are
               ``format`` = "clear" and still restore (`seal_clear_backups` encrypts them).

All of it goes through the ledger (fleetdesk.store.ledger): the station's own SQLite file
by default (+ -wal/-shm, created 0600), or the line's PostgreSQL database shared by every
station (``--ledger postgresql://...``); the schema is fleetdesk.store.schema's.
"""

from __future__ import annotations

import csv
import json
import os
import re
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from fleetdesk.errors import FleetdeskError
from fleetdesk.paths import data_dir
from fleetdesk.store.ledger import Ledger, LedgerUnavailable, configured_ledger, is_postgres
from fleetdesk.store import outbox
from fleetdesk.store.outbox import OUTBOX_FILE, failover, on_line, sync_outbox
from fleetdesk.store.secretbox import FORMAT as SEALED, SecretBox

ATTEMPT_COLUMNS = (
    "id", "time", "station", "port", "slot", "operator", "chip", "mac", "bundle_sha256", "thing",
    "certificate_id", "result", "duration_s", "error", "reflash", "baud", "run_id",
)

def redact(lines) -> list[str]:
    """Drop PEM private-key blocks (and any line naming one) from log lines."""
    out, inside = [], False
    for line in lines:
        text = str(line)
        if "PRIVATE KEY-----" in text:
            inside = "BEGIN" in text and "END" not in text
            out.append("[private key removed]")
            continue
        if not inside:
            out.append(text)
    return out


_PEM_KEY = re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\Z)", re.S)


def scrub(value):
    """``value`` (a string, or dicts/lists of them) with every PEM private-key block replaced by
    "[private key removed]", also one quoted inside a message or a JSON string."""
    if isinstance(value, str):
        return _PEM_KEY.sub("[private key removed]", value) if "PRIVATE KEY" in value else value
    if isinstance(value, dict):
        return {k: scrub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    return value


def process_started(pid: int) -> str | None:
    """When process ``pid`` started, as the OS counts it (Linux: clock ticks since boot from
    ``/proc/<pid>/stat``), or None where that is not known. With the pid it names one process,
    even after the pid is reused."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def run_owner(run: dict) -> str:
    """Who holds an unfinished run: "live" (its process still runs on this host), "other-host"
    (started on another host: its process cannot be checked from here) or "dead" (crashed,
    killed, or a run from before runs named their process).

    Args:
        run: a row of `ProductionDB.unfinished_runs`.
    """
    from fleetdesk.process import pid_alive

    host, pid = run.get("host"), run.get("pid")
    if host and host != socket.gethostname():
        return "other-host"
    if not pid or not pid_alive(int(pid)):
        return "dead"
    if run.get("proc_start") and process_started(int(pid)) not in (None, run["proc_start"]):
        return "dead"  # the pid now names another process
    return "live"


HEARTBEAT_S = float(os.environ.get("FLEETDESK_HEARTBEAT_S", "") or 5.0)  # a station process says it is alive
STALE_AFTER = 3  # heartbeats missed before its open runs count as a dead station's


class BoardBusy(FleetdeskError):
    """Another live run (this station's or another's on the line) is giving this board its identity."""


def default_db_path() -> Path:
    return data_dir() / "production.sqlite3"


@dataclass
class Device:
    mac: str
    thing: str | None
    certificate_id: str | None
    product: str | None
    chip: str | None
    flash_count: int


class ProductionDB:
    """Thread-safe handle on the production record.

    Args:
        path: the ledger: a SQLite file, or a ``postgresql://`` URL (the line's shared
            database). Default: the configured line ledger (`configured_ledger`), else
            ``production.sqlite3`` in the app data dir.
        key_file: the station data key sealing identity backups (default: ``station.key`` in
            the app data dir, apart from the database).
    """

    def __init__(self, path: Path | str | None = None, *, key_file: Path | str | None = None,
                 ledger: Ledger | None = None) -> None:
        target = path or configured_ledger() or default_db_path()
        self._primary: Ledger | None = None
        self._outbox_path = data_dir() / OUTBOX_FILE
        self._retry_at = 0.0
        if ledger is not None:
            self.ledger = ledger
        elif is_postgres(str(target)):
            try:
                self.ledger = self._primary = Ledger(target)
            except LedgerUnavailable:  # the line's database is away: flash into the local outbox meanwhile
                self.ledger = Ledger(self._outbox_path)
                self._retry_at = time.monotonic() + outbox.RECONNECT_S
        else:
            self.ledger = Ledger(target)
        self._primary_target = str(target) if ledger is None else None
        self.path = self.ledger.label
        self.box = SecretBox(key_file)
        self._beat: threading.Thread | None = None
        self._beating = threading.Event()

    def close(self) -> None:
        self._beating.set()
        if self._beat is not None:  # this station process stopped (a clean exit, not a crash)
            try:
                pid = os.getpid()
                self.ledger.run(f"UPDATE stations SET stopped_at={self.ledger.now_sql} WHERE host=? AND pid=?"
                                " AND proc_start=?", (socket.gethostname(), pid, process_started(pid) or ""))
            except Exception:  # noqa: BLE001 - the ledger is away: the heartbeat goes stale instead
                pass
        self.ledger.close()

    @property
    def offline(self) -> bool:
        """Whether this line station records into its local outbox (the line's database is away)."""
        return on_line(self) and self.ledger is not self._primary

    def sync_outbox(self) -> dict:
        """Copy what was recorded offline into the line's database (fleetdesk.store.outbox)."""
        return sync_outbox(self)

    # --- station heartbeats -----------------------------------------------------------
    def heartbeat(self, station: str = "") -> None:
        """Say this station process is alive (the ledger's clock); started by `start_run`
        and repeated every `HEARTBEAT_S` while the handle is open."""
        pid = os.getpid()
        now = self.ledger.now_sql
        self.ledger.run(
            "INSERT INTO stations(host, pid, proc_start, station, started_at, heartbeat_at)"
            f" VALUES (?,?,?,?,{now},{now}) ON CONFLICT(host, pid, proc_start) DO UPDATE SET"
            " heartbeat_at=excluded.heartbeat_at, stopped_at=NULL, station=COALESCE(NULLIF(excluded.station, ''), stations.station)",
            (socket.gethostname(), pid, process_started(pid) or "", station))

    def _start_heartbeat(self, station: str) -> None:
        if self._beat is not None:
            return
        self.heartbeat(station)

        def beat() -> None:
            while not self._beating.wait(HEARTBEAT_S):
                try:
                    self.heartbeat(station)
                except Exception:  # noqa: BLE001 - the ledger is away: the outbox holds the work meanwhile
                    pass

        self._beat = threading.Thread(target=beat, name="ledger-heartbeat", daemon=True)
        self._beat.start()

    @failover
    def stations(self) -> list[dict]:
        """Every station process the ledger has seen, newest first, with ``age`` (seconds since
        its last heartbeat, on the ledger's clock) and ``alive``."""
        rows = self.ledger.all(f"SELECT *, {self.ledger.now_sql} - heartbeat_at AS age FROM stations"
                               " ORDER BY heartbeat_at DESC")
        for r in rows:
            r["alive"] = r["age"] < HEARTBEAT_S * STALE_AFTER and not r.get("stopped_at")
        return rows

    @failover
    def owner(self, run: dict) -> str:
        """Who holds an unfinished run: like `run_owner`, and for a run of another host the
        station heartbeats decide: a fresh one is "other-host" (alive there, left alone), a
        stale one (its station stopped beating) is "dead", so any station of the line may
        close it; without a heartbeat on file it stays "other-host"."""
        who = run_owner(run)
        if who != "other-host":
            return who
        hb = self.ledger.one(f"SELECT {self.ledger.now_sql} - heartbeat_at AS age, stopped_at FROM stations"
                             " WHERE host=? AND pid=? AND proc_start=?",
                             (run["host"], run.get("pid") or 0, run.get("proc_start") or ""))
        if hb is None:
            return "other-host"
        return "dead" if hb["stopped_at"] or hb["age"] >= HEARTBEAT_S * STALE_AFTER else "other-host"

    # --- one board, one identity, line-wide ---------------------------------------------
    @failover
    def lock_board(self, mac: str, run_id: str, station: str = "") -> None:
        """Mark ``mac`` as getting its identity in ``run_id`` until the run finishes (or is
        recovered). A lock a finished or dead run left behind is taken over.

        Raises:
            BoardBusy: another live run holds it (two stations see the same board).
        """
        q = ("SELECT l.run_id, l.station, l.host AS lock_host, r.finished_at, r.pid, r.host, r.proc_start"
             " FROM board_locks l LEFT JOIN runs r ON r.run_id = l.run_id WHERE l.mac=?")
        for _ in range(2):
            try:
                with self.ledger.tx() as tx:
                    held = tx.one(q, (mac,))
                    if held is None:
                        tx.run("INSERT INTO board_locks(mac, run_id, station, host, taken_at) VALUES (?,?,?,?,?)",
                               (mac, run_id, station, socket.gethostname(), time.time()))
                        return
                    if held["run_id"] == run_id:
                        return
                    if held["finished_at"] is None and held["host"] and self.owner(held) != "dead":
                        raise BoardBusy(f"board {mac} is getting its identity on station "
                                        f"{held['station'] or held['lock_host']} right now (run {held['run_id'][:8]})",
                                        "take it off one of the two stations; it keeps a single identity")
                    tx.run("UPDATE board_locks SET run_id=?, station=?, host=?, taken_at=? WHERE mac=? AND run_id=?",
                           (run_id, station, socket.gethostname(), time.time(), mac, held["run_id"]))
                    return
            except self.ledger.integrity_errors:  # another station inserted it at the same moment: look again
                continue
        raise BoardBusy(f"board {mac} is getting its identity on another station right now",
                        "take it off one of the two stations; it keeps a single identity")

    @failover
    def serial_for(self, mac: str) -> int:
        """The board's line-wide serial number (the same one every time for the same MAC)."""
        for _ in range(2):
            row = self.ledger.one("SELECT serial FROM serials WHERE mac=?", (mac,))
            if row:
                return row["serial"]
            try:
                taken = self.ledger.one("INSERT INTO serials(mac, taken_at) VALUES (?,?) RETURNING serial",
                                        (mac, time.time()))
                assert taken is not None  # RETURNING gives the row inserted
                return taken["serial"]
            except self.ledger.integrity_errors:
                continue
        raise FleetdeskError(f"no serial number could be taken for {mac}", "try again")

    # --- runs and journal -------------------------------------------------------------
    @failover
    def start_run(self, *, station: str = "", port: str = "", slot: str = "") -> str:
        """Open a pipeline run; returns its id. Journal steps with `step`.

        The run records the process flashing it (pid, its start time where the OS tells it,
        and the host name), so `run_owner` can tell a crashed run from one another live
        process on the same database is still flashing.
        """
        run_id = uuid.uuid4().hex
        pid = os.getpid()
        self._start_heartbeat(station)
        self.ledger.run(
            "INSERT INTO runs(run_id, started_at, station, port, slot, pid, host, proc_start)"
            " VALUES (?,?,?,?,?,?,?,?)",
            (run_id, time.time(), station, port, slot, pid, socket.gethostname(), process_started(pid)))
        return run_id

    @failover
    def step(self, run_id: str, step: str, status: str, detail: str | dict = "", **run_fields) -> None:
        """Journal one step (status: begin, done, failed, skipped) and update run fields
        (mac, thing, certificate_id, thing_created) in the same transaction. A private key
        quoted in ``detail`` is never stored."""
        text = scrub(json.dumps(detail) if isinstance(detail, dict) else detail)
        for key in run_fields:
            if key not in ("mac", "thing", "certificate_id", "thing_created"):
                raise ValueError(key)
        with self.ledger.tx() as tx:
            tx.run("INSERT INTO journal(run_id, ts, step, status, detail) VALUES (?,?,?,?,?)",
                   (run_id, time.time(), step, status, text))
            for key, value in run_fields.items():
                tx.run(f"UPDATE runs SET {key}=? WHERE run_id=?", (value, run_id))

    @failover
    def journal(self, run_id: str) -> list[dict]:
        return self.ledger.all("SELECT ts, step, status, detail FROM journal WHERE run_id=? ORDER BY id", (run_id,))

    @failover
    def unfinished_runs(self) -> list[dict]:
        """Runs started but never finished (the app crashed, lost power or was killed)."""
        with self.ledger.tx(write=False) as tx:
            out = tx.all("SELECT * FROM runs WHERE finished_at IS NULL ORDER BY started_at")
            for d in out:
                last = tx.one("SELECT step, status FROM journal WHERE run_id=? ORDER BY id DESC LIMIT 1",
                              (d["run_id"],))
                d["last_step"] = f"{last['step']}:{last['status']}" if last else ""
        return out

    @failover
    def passed_with(self, certificate_id: str, after: float = 0.0) -> bool:
        """Whether a board PASSed with ``certificate_id`` in a run started after ``after``
        (epoch seconds): then that certificate is in use and must stay ACTIVE."""
        return self.ledger.one(
            "SELECT 1 AS x FROM attempts a JOIN runs r ON r.run_id = a.run_id WHERE a.certificate_id=?"
            " AND a.result='PASS' AND r.started_at > ? LIMIT 1", (certificate_id, after)) is not None

    @failover
    def mark_recovered(self, run_id: str, how: str) -> bool:
        """Close a crashed run as FAIL with what recovery did; False when it was closed meanwhile
        (another station of the line recovered it, or its owner finished it)."""
        with self.ledger.tx() as tx:
            closed = tx.run("UPDATE runs SET finished_at=?, result='FAIL', recovered=? WHERE run_id=?"
                            " AND finished_at IS NULL", (time.time(), how, run_id)) == 1
            tx.run("DELETE FROM board_locks WHERE run_id=?", (run_id,))
        return closed

    @failover
    def run(self, run_id: str) -> dict | None:
        return self.ledger.one("SELECT * FROM runs WHERE run_id=?", (run_id,))

    # --- attempts -----------------------------------------------------------------------
    @failover
    def finish(self, run_id: str | None, row: dict) -> int:
        """Record a finished attempt (PASS or FAIL) and close its run in one transaction.

        ``row`` holds ATTEMPT_COLUMNS fields; ``reflash`` is computed from known MACs.
        Returns the attempt id.
        """
        row = scrub(dict(row))  # e.g. an error message quoting a key
        row.setdefault("time", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        row["run_id"] = run_id
        with self.ledger.tx() as tx:
            return self._finish_tx(tx, run_id, row)

    @staticmethod
    def _finish_tx(tx, run_id: str | None, row: dict) -> int:
        mac = row.get("mac")
        known = tx.one("SELECT flash_count FROM devices WHERE mac=?", (mac,)) if mac else None
        prior_pass = tx.one("SELECT 1 AS x FROM attempts WHERE mac=? AND result='PASS' LIMIT 1",
                            (mac,)) if mac else None
        row["reflash"] = 1 if (known and known["flash_count"] > 0) or prior_pass else 0
        cols = [c for c in ATTEMPT_COLUMNS if c != "id" and c in row]
        attempt_id = tx.insert(f"INSERT INTO attempts({','.join(cols)}) VALUES ({','.join('?' * len(cols))})",
                               [row[c] for c in cols])
        if run_id:
            tx.run("UPDATE runs SET finished_at=?, result=? WHERE run_id=?", (time.time(), row["result"], run_id))
            tx.run("DELETE FROM board_locks WHERE run_id=?", (run_id,))
        if mac and row["result"] == "PASS":
            now = time.time()
            tx.run(
                "INSERT INTO devices(mac, thing, certificate_id, product, chip, first_flashed, last_flashed, flash_count)"
                " VALUES (?,?,?,?,?,?,?,1) ON CONFLICT(mac) DO UPDATE SET thing=excluded.thing,"
                " certificate_id=excluded.certificate_id, chip=excluded.chip,"
                " product=COALESCE(excluded.product, devices.product),"
                " last_flashed=excluded.last_flashed, flash_count=devices.flash_count+1",
                (mac, row.get("thing"), row.get("certificate_id"), row.get("product"), row.get("chip"), now, now))
        return attempt_id

    @failover
    def attempts(self, mac: str | None = None) -> list[dict]:
        if mac:
            return self.ledger.all("SELECT * FROM attempts WHERE mac=? ORDER BY id", (mac,))
        return self.ledger.all("SELECT * FROM attempts ORDER BY id")

    @failover
    def device(self, mac: str) -> Device | None:
        r = self.ledger.one("SELECT * FROM devices WHERE mac=?", (mac,))
        if not r:
            return None
        return Device(r["mac"], r["thing"], r["certificate_id"], r["product"], r["chip"], r["flash_count"])

    @failover
    def counters(self) -> dict:
        rows = self.ledger.all("SELECT result, COUNT(*) AS n FROM attempts GROUP BY result")
        out = {"PASS": 0, "FAIL": 0}
        out.update({r["result"]: r["n"] for r in rows})
        return out

    def export_csv(self, path: Path | str) -> int:
        """Write every attempt to ``path`` as CSV (header + one line per attempt); returns rows."""
        rows = self.attempts()
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(ATTEMPT_COLUMNS))
            w.writeheader()
            for r in rows:
                w.writerow({k: r.get(k) for k in ATTEMPT_COLUMNS})
        return len(rows)

    # --- per-run logs (console, esptool trace) for the per-board export -----------------
    @failover
    def save_logs(self, run_id: str, **logs: list[str]) -> None:
        """Keep a run's logs (e.g. console=[...], esptool=[...]); private key blocks are dropped."""
        with self.ledger.tx() as tx:
            for kind, lines in logs.items():
                tx.run("INSERT INTO logs(run_id, kind, text) VALUES (?,?,?)"
                       " ON CONFLICT(run_id, kind) DO UPDATE SET text=excluded.text",
                       (run_id, kind, "\n".join(redact(lines))))

    @failover
    def logs(self, run_id: str) -> dict[str, str]:
        rows = self.ledger.all("SELECT kind, text FROM logs WHERE run_id=?", (run_id,))
        return {r["kind"]: r["text"] for r in rows}

    @failover
    def attempt(self, attempt_id: int) -> dict | None:
        return self.ledger.one("SELECT * FROM attempts WHERE id=?", (attempt_id,))

    # --- slot labels (a line ledger keeps every station's) ------------------------------
    @failover
    def slot_labels(self, station: str) -> dict[str, str]:
        return {r["slot"]: r["label"] for r in self.ledger.all("SELECT slot, label FROM slot_labels WHERE station=?",
                                                                (station,))}

    @failover
    def set_slot_label(self, station: str, slot: str, label: str) -> None:
        self.ledger.run("INSERT INTO slot_labels(station, slot, label) VALUES (?,?,?)"
                        " ON CONFLICT(station, slot) DO UPDATE SET label=excluded.label", (station, slot, label))

    # --- identity backups ---------------------------------------------------------------
    @failover
    def save_backup(self, mac: str, label: str, offset: int, data: bytes) -> int:
        """Keep a partition read back from a board, sealed with the station data key.

        Returns the backup id.

        Raises:
            SecretKeyError: backups sealed with a key that is now missing exist (a new key is
                then not made: it would hide them); the message names the key file.
        """
        blob = self.box.seal(data, create=self._may_make_key())
        return self.ledger.insert('INSERT INTO backups(mac, ts, label, "offset", data, format) VALUES (?,?,?,?,?,?)',
                                  (mac, time.time(), label, offset, blob, SEALED))

    def _may_make_key(self) -> bool:
        """A new station key may be made only while no backup sealed with a key exists (a new
        key would hide those rows)."""
        return self.ledger.one("SELECT 1 AS x FROM backups WHERE format=? LIMIT 1", (SEALED,)) is None

    @failover
    def check_backup_key(self) -> None:
        """Make sure a backup can be sealed now (the key is loaded, or made when none is in use).

        Call it before a write that replaces a board's identity, so the write never goes
        ahead when its backup could not be kept.

        Raises:
            SecretKeyError: the station data key is missing, different-and-unusable or damaged.
        """
        self.box.ensure_key(create=self._may_make_key())

    @failover
    def latest_backup(self, mac: str, label: str) -> tuple[int, bytes] | None:
        """The newest backup of ``label`` for ``mac`` as (offset, plaintext bytes), or None.

        Raises:
            SecretKeyError: the station data key it was sealed with is missing or different
                (the row is kept).
        """
        r = self.ledger.one('SELECT id, "offset", data, format FROM backups WHERE mac=? AND label=?'
                            " ORDER BY id DESC LIMIT 1", (mac, label))
        return (r["offset"], self._open_backup(r)) if r else None

    def _open_backup(self, r) -> bytes:
        if r["format"] == "clear":
            return bytes(r["data"])
        if r["format"] == SEALED:
            return self.box.open(bytes(r["data"]), f"identity backup #{r['id']} in {self.path}")
        raise FleetdeskError(f"identity backup #{r['id']} in {self.path} has an unknown format {r['format']!r}",
                             "open this database with the newer Fleetdesk that wrote it; the row is kept")

    @failover
    def backup_formats(self) -> dict[str, int]:
        """How many backups are stored in each format ("clear", "fdsb1")."""
        rows = self.ledger.all("SELECT format, COUNT(*) AS n FROM backups GROUP BY format")
        return {r["format"]: r["n"] for r in rows}

    def seal_clear_backups(self) -> int:
        """Encrypt backups stored in clear by older versions, in place; returns how many.

        On SQLite the old pages are overwritten with zeros (``secure_delete``) and the WAL is
        checkpointed, so the clear bytes do not linger in the database files.
        """
        rows = self.ledger.all("SELECT id, data FROM backups WHERE format='clear'")
        if not rows:
            return 0
        create = self._may_make_key()
        blobs = [(self.box.seal(bytes(r["data"]), create=create), r["id"]) for r in rows]
        sqlite = self.ledger.kind == "sqlite"
        with self.ledger._lock:
            if sqlite:
                self.ledger._conn.execute("PRAGMA secure_delete=ON")
            try:
                with self.ledger.tx() as tx:
                    tx.many("UPDATE backups SET data=?, format='" + SEALED + "' WHERE id=? AND format='clear'", blobs)
                if sqlite:
                    self.ledger._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                if sqlite:
                    self.ledger._conn.execute("PRAGMA secure_delete=OFF")
        return len(rows)

