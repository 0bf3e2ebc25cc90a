"""A line station's outbox: while the line's PostgreSQL ledger cannot be reached, the
station's production record goes into a local SQLite file (same schema, ``ledger-outbox.sqlite3``
in the data dir) and is copied into the line's database when it is back (`sync_outbox`).

`failover` wraps the ProductionDB methods: each is one transaction, so one the lost database
rolled back is simply run again on the outbox; while offline the line's database is tried
again every ``RECONNECT_S`` (then the outbox is synced and the station is online again).
Offline, a board lock and a serial number are this station's only (the line cannot be asked).
"""

from __future__ import annotations

import functools
import time

from fleetdesk.store.ledger import Ledger, LedgerUnavailable, is_postgres

OUTBOX_FILE = "ledger-outbox.sqlite3"
RECONNECT_S = 15.0  # how often an offline station tries the line's database again


def on_line(db) -> bool:
    return bool(db._primary_target) and is_postgres(db._primary_target)


def failover(fn):
    """A ProductionDB method that runs on the outbox when the line's database is away."""

    @functools.wraps(fn)
    def wrapper(self, *args, **kwargs):
        if on_line(self):
            maybe_reconnect(self)
            try:
                return fn(self, *args, **kwargs)
            except LedgerUnavailable:
                if self.ledger is not self._primary:
                    raise
                go_offline(self)
                return fn(self, *args, **kwargs)
        return fn(self, *args, **kwargs)

    return wrapper


def go_offline(db) -> None:
    db.ledger = Ledger(db._outbox_path)
    db._retry_at = time.monotonic() + RECONNECT_S


def maybe_reconnect(db) -> None:
    if db._primary is not None and db.ledger is db._primary:
        return
    if time.monotonic() < db._retry_at:
        return
    db._retry_at = time.monotonic() + RECONNECT_S
    try:
        if db._primary is None:
            db._primary = Ledger(db._primary_target)
        sync_outbox(db)
    except LedgerUnavailable:
        return
    db.ledger = db._primary


def sync_outbox(db) -> dict:
    """Copy what the station recorded offline into the line's database, idempotently (a row
    already there is not copied twice, so a sync cut short is simply run again), then empty
    the outbox. Returns how many runs, journal steps and attempts were copied.

    Raises:
        LedgerUnavailable: the line's database cannot be reached (the outbox is kept).
    """
    done = {"runs": 0, "journal": 0, "attempts": 0}
    if not db._outbox_path.exists() or db._primary is None:
        return done
    box = Ledger(db._outbox_path)
    try:
        runs = box.all("SELECT * FROM runs")
        journal = box.all("SELECT * FROM journal ORDER BY id")
        attempts = box.all("SELECT * FROM attempts ORDER BY id")
        logs = box.all("SELECT * FROM logs")
        backups = box.all('SELECT * FROM backups ORDER BY id')
        labels = box.all("SELECT * FROM slot_labels")
        if not (runs or journal or attempts or logs or backups or labels):
            return done
        with db._primary.tx() as tx:
            for r in runs:
                cols = [c for c in r if c != "last_step"]
                tx.run(f"INSERT INTO runs({','.join(cols)}) VALUES ({','.join('?' * len(cols))})"
                       " ON CONFLICT(run_id) DO UPDATE SET finished_at=COALESCE(runs.finished_at, excluded.finished_at),"
                       " result=COALESCE(runs.result, excluded.result), mac=COALESCE(excluded.mac, runs.mac),"
                       " thing=COALESCE(excluded.thing, runs.thing),"
                       " certificate_id=COALESCE(excluded.certificate_id, runs.certificate_id),"
                       " recovered=COALESCE(runs.recovered, excluded.recovered)", [r[c] for c in cols])
                done["runs"] += 1
            for j in journal:
                if tx.one("SELECT 1 AS x FROM journal WHERE run_id=? AND ts=? AND step=? AND status=?",
                          (j["run_id"], j["ts"], j["step"], j["status"])) is None:
                    tx.run("INSERT INTO journal(run_id, ts, step, status, detail) VALUES (?,?,?,?,?)",
                           (j["run_id"], j["ts"], j["step"], j["status"], j["detail"]))
                    done["journal"] += 1
            for a in attempts:
                same = (tx.one("SELECT 1 AS x FROM attempts WHERE run_id=?", (a["run_id"],)) if a["run_id"] else
                        tx.one("SELECT 1 AS x FROM attempts WHERE run_id IS NULL AND time=? AND port=? AND error=?",
                               (a["time"], a["port"], a["error"])))
                if same is None:
                    row = {k: v for k, v in a.items() if k not in ("id", "reflash")}
                    db._finish_tx(tx, a["run_id"], row)
                    done["attempts"] += 1
                    if a["run_id"]:  # its run closed when it finished, not now
                        closed = next((r["finished_at"] for r in runs if r["run_id"] == a["run_id"]), None)
                        if closed:
                            tx.run("UPDATE runs SET finished_at=? WHERE run_id=?", (closed, a["run_id"]))
            for g in logs:
                tx.run("INSERT INTO logs(run_id, kind, text) VALUES (?,?,?)"
                       " ON CONFLICT(run_id, kind) DO UPDATE SET text=excluded.text", (g["run_id"], g["kind"], g["text"]))
            for b in backups:
                if tx.one("SELECT 1 AS x FROM backups WHERE mac=? AND ts=? AND label=?",
                          (b["mac"], b["ts"], b["label"])) is None:
                    tx.run('INSERT INTO backups(mac, ts, label, "offset", data, format) VALUES (?,?,?,?,?,?)',
                           (b["mac"], b["ts"], b["label"], b["offset"], bytes(b["data"]), b["format"]))
            for lb in labels:
                tx.run("INSERT INTO slot_labels(station, slot, label) VALUES (?,?,?)"
                       " ON CONFLICT(station, slot) DO UPDATE SET label=excluded.label",
                       (lb["station"], lb["slot"], lb["label"]))
        with box.tx() as tx:  # in the line's database now: the outbox starts empty again
            for table in ("journal", "attempts", "logs", "backups", "slot_labels", "board_locks", "runs", "stations"):
                tx.run(f"DELETE FROM {table}")
    finally:
        box.close()
    return done

