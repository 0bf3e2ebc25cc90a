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

The database files (+ -wal/-shm) are created 0600.
"""

from __future__ import annotations

import csv
import json
import os
import re
import socket
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from fleetdesk.errors import FleetdeskError
from fleetdesk.paths import data_dir
from fleetdesk.store.secretbox import FORMAT as SEALED, SecretBox, private_db_file

ATTEMPT_COLUMNS = (
    "id", "time", "station", "port", "slot", "operator", "chip", "mac", "bundle_sha256", "thing",
    "certificate_id", "result", "duration_s", "error", "reflash", "baud", "run_id",
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS attempts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time TEXT NOT NULL, station TEXT, port TEXT, slot TEXT, operator TEXT, chip TEXT, mac TEXT,
    bundle_sha256 TEXT, thing TEXT, certificate_id TEXT, result TEXT NOT NULL, duration_s REAL,
    error TEXT, reflash INTEGER NOT NULL DEFAULT 0, baud INTEGER, run_id TEXT
);
CREATE INDEX IF NOT EXISTS attempts_mac ON attempts(mac);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, started_at REAL NOT NULL, finished_at REAL, station TEXT, port TEXT,
    slot TEXT, mac TEXT, thing TEXT, certificate_id TEXT, thing_created INTEGER DEFAULT 0,
    result TEXT, recovered TEXT, pid INTEGER, host TEXT, proc_start TEXT
);
CREATE TABLE IF NOT EXISTS journal (
    id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, ts REAL NOT NULL,
    step TEXT NOT NULL, status TEXT NOT NULL, detail TEXT
);
CREATE INDEX IF NOT EXISTS journal_run ON journal(run_id);
CREATE TABLE IF NOT EXISTS devices (
    mac TEXT PRIMARY KEY, thing TEXT, certificate_id TEXT, product TEXT, chip TEXT,
    first_flashed REAL, last_flashed REAL, flash_count INTEGER DEFAULT 0
);
CREATE TABLE IF NOT EXISTS logs (
    run_id TEXT NOT NULL, kind TEXT NOT NULL, text TEXT NOT NULL, PRIMARY KEY (run_id, kind)
);
CREATE TABLE IF NOT EXISTS backups (
    id INTEGER PRIMARY KEY AUTOINCREMENT, mac TEXT NOT NULL, ts REAL NOT NULL, label TEXT,
    offset INTEGER, data BLOB NOT NULL, format TEXT NOT NULL DEFAULT 'clear'
);
"""


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
    """Thread-safe handle on the production database.

    Args:
        path: database file (default: ``production.sqlite3`` in the app data dir).
        key_file: the station data key sealing identity backups (default: ``station.key`` in
            the app data dir, apart from the database).
    """

    def __init__(self, path: Path | str | None = None, *, key_file: Path | str | None = None) -> None:
        self.path = private_db_file(Path(path) if path else default_db_path())
        self.box = SecretBox(key_file)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=30, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        cols = {r["name"] for r in self._db.execute("PRAGMA table_info(backups)")}
        if "format" not in cols:  # a database from before backups were sealed: its rows are clear
            self._db.execute("ALTER TABLE backups ADD COLUMN format TEXT NOT NULL DEFAULT 'clear'")
        cols = {r["name"] for r in self._db.execute("PRAGMA table_info(runs)")}
        for name, kind in (("pid", "INTEGER"), ("host", "TEXT"), ("proc_start", "TEXT")):
            if name not in cols:  # a database from before runs named their process (owner unknown: NULL)
                try:
                    self._db.execute(f"ALTER TABLE runs ADD COLUMN {name} {kind}")
                except sqlite3.OperationalError as exc:  # another process migrated it just now
                    if "duplicate column" not in str(exc):
                        raise

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _tx(self, fn):
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                out = fn(self._db)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            return out

    # --- runs and journal -------------------------------------------------------------
    def start_run(self, *, station: str = "", port: str = "", slot: str = "") -> str:
        """Open a pipeline run; returns its id. Journal steps with `step`.

        The run records the process flashing it (pid, its start time where the OS tells it,
        and the host name), so `run_owner` can tell a crashed run from one another live
        process on the same database is still flashing.
        """
        run_id = uuid.uuid4().hex
        pid = os.getpid()
        self._tx(lambda db: db.execute(
            "INSERT INTO runs(run_id, started_at, station, port, slot, pid, host, proc_start)"
            " VALUES (?,?,?,?,?,?,?,?)",
            (run_id, time.time(), station, port, slot, pid, socket.gethostname(), process_started(pid))))
        return run_id

    def step(self, run_id: str, step: str, status: str, detail: str | dict = "", **run_fields) -> None:
        """Journal one step (status: begin, done, failed, skipped) and update run fields
        (mac, thing, certificate_id, thing_created) in the same transaction. A private key
        quoted in ``detail`` is never stored."""
        text = scrub(json.dumps(detail) if isinstance(detail, dict) else detail)

        def do(db):
            db.execute("INSERT INTO journal(run_id, ts, step, status, detail) VALUES (?,?,?,?,?)",
                       (run_id, time.time(), step, status, text))
            for key, value in run_fields.items():
                if key not in ("mac", "thing", "certificate_id", "thing_created"):
                    raise ValueError(key)
                db.execute(f"UPDATE runs SET {key}=? WHERE run_id=?", (value, run_id))

        self._tx(do)

    def journal(self, run_id: str) -> list[dict]:
        with self._lock:
            rows = self._db.execute("SELECT ts, step, status, detail FROM journal WHERE run_id=? ORDER BY id",
                                    (run_id,)).fetchall()
        return [dict(r) for r in rows]

    def unfinished_runs(self) -> list[dict]:
        """Runs started but never finished (the app crashed, lost power or was killed)."""
        with self._lock:
            rows = self._db.execute("SELECT * FROM runs WHERE finished_at IS NULL ORDER BY started_at").fetchall()
        out = []
        for r in rows:
            d = dict(r)
            last = self._db.execute("SELECT step, status FROM journal WHERE run_id=? ORDER BY id DESC LIMIT 1",
                                    (d["run_id"],)).fetchone()
            d["last_step"] = f"{last['step']}:{last['status']}" if last else ""
            out.append(d)
        return out

    def passed_with(self, certificate_id: str, after: float = 0.0) -> bool:
        """Whether a board PASSed with ``certificate_id`` in a run started after ``after``
        (epoch seconds): then that certificate is in use and must stay ACTIVE."""
        with self._lock:
            return self._db.execute(
                "SELECT 1 FROM attempts a JOIN runs r ON r.run_id = a.run_id WHERE a.certificate_id=?"
                " AND a.result='PASS' AND r.started_at > ? LIMIT 1", (certificate_id, after)).fetchone() is not None

    def mark_recovered(self, run_id: str, how: str) -> None:
        self._tx(lambda db: db.execute(
            "UPDATE runs SET finished_at=?, result='FAIL', recovered=? WHERE run_id=?", (time.time(), how, run_id)))

    def run(self, run_id: str) -> dict | None:
        with self._lock:
            r = self._db.execute("SELECT * FROM runs WHERE run_id=?", (run_id,)).fetchone()
        return dict(r) if r else None

    # --- attempts -----------------------------------------------------------------------
    def finish(self, run_id: str | None, row: dict) -> int:
        """Record a finished attempt (PASS or FAIL) and close its run in one transaction.

        ``row`` holds ATTEMPT_COLUMNS fields; ``reflash`` is computed from known MACs.
        Returns the attempt id.
        """
        row = scrub(dict(row))  # e.g. an error message quoting a key
        row.setdefault("time", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        row["run_id"] = run_id

        def do(db):
            mac = row.get("mac")
            known = db.execute("SELECT flash_count FROM devices WHERE mac=?", (mac,)).fetchone() if mac else None
            prior_pass = db.execute("SELECT 1 FROM attempts WHERE mac=? AND result='PASS' LIMIT 1",
                                    (mac,)).fetchone() if mac else None
            row["reflash"] = 1 if (known and known["flash_count"] > 0) or prior_pass else 0
            cols = [c for c in ATTEMPT_COLUMNS if c != "id" and c in row]
            cur = db.execute(f"INSERT INTO attempts({','.join(cols)}) VALUES ({','.join('?' * len(cols))})",
                             [row[c] for c in cols])
            if run_id:
                db.execute("UPDATE runs SET finished_at=?, result=? WHERE run_id=?", (time.time(), row["result"], run_id))
            if mac and row["result"] == "PASS":
                now = time.time()
                db.execute(
                    "INSERT INTO devices(mac, thing, certificate_id, product, chip, first_flashed, last_flashed, flash_count)"
                    " VALUES (?,?,?,?,?,?,?,1) ON CONFLICT(mac) DO UPDATE SET thing=excluded.thing,"
                    " certificate_id=excluded.certificate_id, chip=excluded.chip,"
                    " product=COALESCE(excluded.product, devices.product),"
                    " last_flashed=excluded.last_flashed, flash_count=devices.flash_count+1",
                    (mac, row.get("thing"), row.get("certificate_id"), row.get("product"), row.get("chip"), now, now))
            return cur.lastrowid

        return self._tx(do)

    def attempts(self, mac: str | None = None) -> list[dict]:
        with self._lock:
            if mac:
                rows = self._db.execute("SELECT * FROM attempts WHERE mac=? ORDER BY id", (mac,)).fetchall()
            else:
                rows = self._db.execute("SELECT * FROM attempts ORDER BY id").fetchall()
        return [dict(r) for r in rows]

    def device(self, mac: str) -> Device | None:
        with self._lock:
            r = self._db.execute("SELECT * FROM devices WHERE mac=?", (mac,)).fetchone()
        if not r:
            return None
        return Device(r["mac"], r["thing"], r["certificate_id"], r["product"], r["chip"], r["flash_count"])

    def counters(self) -> dict:
        with self._lock:
            rows = self._db.execute("SELECT result, COUNT(*) n FROM attempts GROUP BY result").fetchall()
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
    def save_logs(self, run_id: str, **logs: list[str]) -> None:
        """Keep a run's logs (e.g. console=[...], esptool=[...]); private key blocks are dropped."""
        def do(db):
            for kind, lines in logs.items():
                db.execute("INSERT OR REPLACE INTO logs(run_id, kind, text) VALUES (?,?,?)",
                           (run_id, kind, "\n".join(redact(lines))))
        self._tx(do)

    def logs(self, run_id: str) -> dict[str, str]:
        with self._lock:
            rows = self._db.execute("SELECT kind, text FROM logs WHERE run_id=?", (run_id,)).fetchall()
        return {r["kind"]: r["text"] for r in rows}

    def attempt(self, attempt_id: int) -> dict | None:
        with self._lock:
            r = self._db.execute("SELECT * FROM attempts WHERE id=?", (attempt_id,)).fetchone()
        return dict(r) if r else None

    # --- identity backups ---------------------------------------------------------------
    def save_backup(self, mac: str, label: str, offset: int, data: bytes) -> int:
        """Keep a partition read back from a board, sealed with the station data key.

        Returns the backup id.

        Raises:
            SecretKeyError: backups sealed with a key that is now missing exist (a new key is
                then not made: it would hide them); the message names the key file.
        """
        blob = self.box.seal(data, create=self._may_make_key())
        return self._tx(lambda db: db.execute(
            "INSERT INTO backups(mac, ts, label, offset, data, format) VALUES (?,?,?,?,?,?)",
            (mac, time.time(), label, offset, blob, SEALED)).lastrowid)

    def _may_make_key(self) -> bool:
        """A new station key may be made only while no backup sealed with a key exists (a new
        key would hide those rows)."""
        with self._lock:
            return self._db.execute("SELECT 1 FROM backups WHERE format=? LIMIT 1", (SEALED,)).fetchone() is None

    def check_backup_key(self) -> None:
        """Make sure a backup can be sealed now (the key is loaded, or made when none is in use).

        Call it before a write that replaces a board's identity, so the write never goes
        ahead when its backup could not be kept.

        Raises:
            SecretKeyError: the station data key is missing, different-and-unusable or damaged.
        """
        self.box.ensure_key(create=self._may_make_key())

    def latest_backup(self, mac: str, label: str) -> tuple[int, bytes] | None:
        """The newest backup of ``label`` for ``mac`` as (offset, plaintext bytes), or None.

        Raises:
            SecretKeyError: the station data key it was sealed with is missing or different
                (the row is kept).
        """
        with self._lock:
            r = self._db.execute("SELECT id, offset, data, format FROM backups WHERE mac=? AND label=?"
                                 " ORDER BY id DESC LIMIT 1", (mac, label)).fetchone()
        return (r["offset"], self._open_backup(r)) if r else None

    def _open_backup(self, r) -> bytes:
        if r["format"] == "clear":
            return bytes(r["data"])
        if r["format"] == SEALED:
            return self.box.open(r["data"], f"identity backup #{r['id']} in {self.path}")
        raise FleetdeskError(f"identity backup #{r['id']} in {self.path} has an unknown format {r['format']!r}",
                             "open this database with the newer Fleetdesk that wrote it; the row is kept")

    def backup_formats(self) -> dict[str, int]:
        """How many backups are stored in each format ("clear", "fdsb1")."""
        with self._lock:
            rows = self._db.execute("SELECT format, COUNT(*) n FROM backups GROUP BY format").fetchall()
        return {r["format"]: r["n"] for r in rows}

    def seal_clear_backups(self) -> int:
        """Encrypt backups stored in clear by older versions, in place; returns how many.

        The old pages are overwritten with zeros (``secure_delete``) and the WAL is
        checkpointed, so the clear bytes do not linger in the database files.
        """
        with self._lock:
            rows = self._db.execute("SELECT id, data FROM backups WHERE format='clear'").fetchall()
            if not rows:
                return 0
            create = self._may_make_key()
            blobs = [(self.box.seal(r["data"], create=create), r["id"]) for r in rows]
            self._db.execute("PRAGMA secure_delete=ON")
            try:
                self._tx(lambda db: db.executemany(
                    "UPDATE backups SET data=?, format='" + SEALED + "' WHERE id=? AND format='clear'", blobs))
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                self._db.execute("PRAGMA secure_delete=OFF")
        return len(rows)
