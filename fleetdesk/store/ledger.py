"""The ledger: one data-access layer over SQLite (a single station, the default) or
PostgreSQL (every station of a line on one database, ``--ledger postgresql://...``).

The same SQL runs on both: statements are written with ``?`` placeholders and the types of
`fleetdesk.store.schema` (which maps them per engine); rows come back as dicts. A
transaction is ``with ledger.tx() as tx: tx.one(...); tx.run(...)`` (SQLite: BEGIN IMMEDIATE,
one writer at a time; PostgreSQL: READ COMMITTED, with ``FOR UPDATE SKIP LOCKED`` where rows
are handed out). The schema is versioned (`fleetdesk.store.schema.MIGRATIONS`): opening a
ledger migrates it to this version and refuses one a newer Fleetdesk wrote.

Which ledger a station uses: the ``target`` given, else ``FLEETDESK_LEDGER`` (the CLI's
``--ledger`` sets it), else the ``ledger`` of ``line.json`` in the config dir (the Settings
field), else the station's own SQLite files.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from fleetdesk.errors import FleetdeskError
from fleetdesk.paths import config_dir
from fleetdesk.store.secretbox import private_db_file

ENV = "FLEETDESK_LEDGER"
_LOOPBACK = ("", "localhost", "127.0.0.1", "::1")
_WEAK_SSL = ("disable", "allow", "prefer", "require")


class LedgerError(FleetdeskError):
    """The ledger cannot be opened, is unreachable, or holds a schema this version cannot use."""


class LedgerUnavailable(LedgerError):
    """The ledger database cannot be reached (network, server down)."""


def line_settings_path() -> Path:
    return config_dir() / "line.json"


def configured_ledger() -> str | None:
    """The line ledger URL this process is set to use (env, then Settings), or None (local SQLite)."""
    url = os.environ.get(ENV, "").strip()
    if url:
        return url
    try:
        return (json.loads(line_settings_path().read_text()).get("ledger") or "").strip() or None
    except (OSError, ValueError, AttributeError):
        return None


def save_ledger_setting(url: str | None) -> None:
    """Store the Settings field (``line.json``); an empty value means the station's own SQLite."""
    if url:
        check_url(url)
    path = line_settings_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        data = {}
    data["ledger"] = url or ""
    path.write_text(json.dumps(data, indent=1))
    os.chmod(path, 0o600)  # the URL may hold a password


def is_postgres(target) -> bool:
    return isinstance(target, str) and target.split(":", 1)[0] in ("postgresql", "postgres")


def redacted(url: str) -> str:
    """``url`` without its password (for messages and the Line view)."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


def check_url(url: str) -> None:
    """Refuse a ledger URL that is not PostgreSQL, or that talks to a remote server without
    verifying its TLS certificate.

    Raises:
        LedgerError: with what to change.
    """
    if not is_postgres(url):
        raise LedgerError(f"the ledger {redacted(url)!r} is not a postgresql:// URL",
                          "use postgresql://user@host/db (or leave it empty for this station's own SQLite)")
    parts = urlsplit(url)
    mode = (parse_qs(parts.query).get("sslmode") or [""])[0]
    host = parts.hostname or ""
    if host not in _LOOPBACK and not host.startswith("/") and mode in _WEAK_SSL:
        raise LedgerError(f"the ledger on {host} uses sslmode={mode}: the server's certificate would not be verified",
                          "use sslmode=verify-full (with sslrootcert=...) for a ledger on another machine")


class Tx:
    """One transaction's statements (``?`` placeholders)."""

    def __init__(self, ledger: "Ledger", cur) -> None:
        self._ledger, self._cur = ledger, cur

    def run(self, sql: str, params=()) -> int:
        """Execute; returns the rows changed."""
        self._cur.execute(self._ledger.sql(sql), tuple(params))
        return self._cur.rowcount

    def one(self, sql: str, params=()) -> dict | None:
        self._cur.execute(self._ledger.sql(sql), tuple(params))
        row = self._cur.fetchone()
        return self._ledger.row(row)

    def all(self, sql: str, params=()) -> list[dict]:
        self._cur.execute(self._ledger.sql(sql), tuple(params))
        return [dict(r) for r in self._cur.fetchall()]

    def insert(self, sql: str, params=()) -> int:
        """An INSERT into a table with an ``id`` column; returns the new row's id."""
        row = self.one(sql + " RETURNING id", params)
        assert row is not None  # RETURNING answers the inserted row
        return row["id"]

    def many(self, sql: str, seq) -> None:
        self._cur.executemany(self._ledger.sql(sql), [tuple(p) for p in seq])


class Ledger:
    """A handle on one ledger database, safe to share between threads (one connection, used
    by one thread at a time).

    Args:
        target: a SQLite file path, or a ``postgresql://`` URL.
    """

    def __init__(self, target: str | Path) -> None:
        from fleetdesk.store.schema import migrate

        self._lock = threading.RLock()
        self._open_tx: Tx | None = None
        self.target = str(target)
        if is_postgres(self.target):
            check_url(self.target)
            self.kind = "postgresql"
            self.label = redacted(self.target)
            self._conn: Any = None  # a psycopg connection here, a sqlite3 one for a file
            self._connect()
        else:
            self.kind = "sqlite"
            self.path = private_db_file(Path(target))
            self.label = str(self.path)
            self._conn = sqlite3.connect(self.path, check_same_thread=False, timeout=30, isolation_level=None)
            self._conn.row_factory = sqlite3.Row
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
        migrate(self)

    # --- connection ---------------------------------------------------------------------
    def _connect(self) -> None:
        import psycopg
        from psycopg.rows import dict_row

        try:
            self._conn = psycopg.connect(self.target, autocommit=True, row_factory=dict_row, connect_timeout=10,
                                         application_name="fleetdesk")
        except psycopg.OperationalError as exc:
            raise LedgerUnavailable(f"the line ledger {self.label} cannot be reached ({str(exc).strip()})",
                                    "check the network and that the PostgreSQL server runs; or fix --ledger / "
                                    f"{ENV}") from exc

    @property
    def shared(self) -> bool:
        """Whether other stations may use this ledger (PostgreSQL)."""
        return self.kind == "postgresql"

    @property
    def for_update(self) -> str:
        """Appended to a SELECT whose rows the transaction then changes (PostgreSQL: row locks;
        SQLite: BEGIN IMMEDIATE already holds the only write lock)."""
        return " FOR UPDATE" if self.kind == "postgresql" else ""

    @property
    def skip_locked(self) -> str:
        """Like `for_update`, skipping rows another transaction holds (a pool row another
        station is taking is never handed out twice, and nobody waits for it)."""
        return " FOR UPDATE SKIP LOCKED" if self.kind == "postgresql" else ""

    @property
    def now_sql(self) -> str:
        """The database's own clock in epoch seconds (heartbeats compared on one clock, whatever
        the stations' clocks say)."""
        if self.kind == "postgresql":
            return "EXTRACT(EPOCH FROM clock_timestamp())::double precision"
        return "((julianday('now') - 2440587.5) * 86400.0)"

    @property
    def integrity_errors(self) -> tuple:
        """The exception types of a broken unique constraint."""
        if self.kind == "postgresql":
            import psycopg

            return (psycopg.IntegrityError,)
        return (sqlite3.IntegrityError,)

    def sql(self, text: str) -> str:
        if self.kind == "postgresql":
            return text.replace("%", "%%").replace("?", "%s")
        return text

    @staticmethod
    def row(r) -> dict | None:
        if r is None:
            return None
        return dict(r)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()

    @contextmanager
    def tx(self, write: bool = True):
        """A transaction: committed when the block ends, rolled back on an exception
        (``write`` False: a read, which on SQLite does not wait for the write lock).

        Raises:
            LedgerUnavailable: the PostgreSQL server cannot be reached (one reconnect is tried
                before the transaction begins).
        """
        with self._lock:
            if self._open_tx is not None:  # inside a transaction of this thread: part of it
                yield self._open_tx
                return
            if self.kind == "sqlite":
                cur = self._conn.cursor()
                cur.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                self._open_tx = Tx(self, cur)
                try:
                    yield self._open_tx
                except BaseException:
                    self._open_tx = None
                    cur.execute("ROLLBACK")
                    raise
                self._open_tx = None
                cur.execute("COMMIT")
                return
            import psycopg

            if self._conn.closed or self._conn.broken:
                self._connect()
            try:
                with self._conn.transaction(), self._conn.cursor() as cur:
                    self._open_tx = Tx(self, cur)
                    yield self._open_tx
            except psycopg.OperationalError as exc:
                raise LedgerUnavailable(f"the line ledger {self.label} was lost ({str(exc).strip()})",
                                        "check the network and the PostgreSQL server; nothing of this step was "
                                        "written") from exc
            finally:
                self._open_tx = None

    # --- one-statement transactions -----------------------------------------------------
    def one(self, sql: str, params=()) -> dict | None:
        with self.tx(write=False) as tx:
            return tx.one(sql, params)

    def all(self, sql: str, params=()) -> list[dict]:
        with self.tx(write=False) as tx:
            return tx.all(sql, params)

    def run(self, sql: str, params=()) -> int:
        with self.tx() as tx:
            return tx.run(sql, params)

    def insert(self, sql: str, params=()) -> int:
        with self.tx() as tx:
            return tx.insert(sql, params)

    def scalar(self, sql: str, params=()):
        row = self.one(sql, params)
        return next(iter(row.values())) if row else None
