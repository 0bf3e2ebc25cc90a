"""Telemetry history: DHT11 samples per thing in SQLite (WAL), batched, with retention.

One row per sample in a clustered ``(thing_id, ts, seq)`` table, so a range query for one
thing reads contiguous pages, and a QoS1 redelivery of an already stored sample is ignored
(``INSERT OR IGNORE``). Writes come in batches (one transaction per batch); the caller
acknowledges the MQTT messages only after :meth:`TelemetryStore.insert_many` returned
(store before ack). The store is safe to share between threads (one lock around one
connection); the cloud layer writes from a single worker thread.

Example::

    store = TelemetryStore()            # <data dir>/telemetry.sqlite3
    store.insert_many([parse_sample("t1", b'{"temperature":21,"humidity":40,"ts":1700000000,"seq":1}')])
    ts, temp, hum = store.arrays("t1", since=time.time() - 3600)
    store.export("t1", since, until, "csv", sys.stdout)
"""

from __future__ import annotations

import csv
import datetime
import json
import math
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, TextIO

from fleetdesk.errors import ConfigError, FleetdeskError
from fleetdesk.paths import data_dir

# Device clocks before this (2020-01-01) are not set (no NTP yet): use the receive time.
PLAUSIBLE_TS = 1_577_836_800.0
DEFAULT_RETENTION_DAYS = 30.0
_NULL = -1.0e300  # stands for SQL NULL while building numpy arrays

SCHEMA = """
CREATE TABLE IF NOT EXISTS things (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS samples (
    thing_id INTEGER NOT NULL,
    ts REAL NOT NULL,
    seq INTEGER NOT NULL,
    temperature REAL,
    humidity REAL,
    PRIMARY KEY (thing_id, ts, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
"""


class TelemetryError(FleetdeskError):
    """A telemetry payload or a history request is unusable."""


@dataclass(slots=True)
class Sample:
    """One DHT11 reading.

    Attributes:
        thing: thing name.
        ts: epoch seconds (the device's clock when set, else the receive time).
        temperature: degrees Celsius, or None if the device sent none.
        humidity: relative humidity %, or None.
        seq: the device's message sequence number (-1 if absent).
        received: epoch seconds when the app received it.
    """

    thing: str
    ts: float
    temperature: float | None
    humidity: float | None
    seq: int = -1
    received: float = 0.0

    def as_dict(self) -> dict:
        return {"thing": self.thing, "ts": self.ts, "temperature": self.temperature,
                "humidity": self.humidity, "seq": self.seq}


def _num(value: Any, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TelemetryError(f"{name} is not a number: {value!r}")
    f = float(value)
    if not math.isfinite(f):
        raise TelemetryError(f"{name} is not finite: {value!r}")
    return f


def parse_sample(thing: str, payload: bytes | str | dict, received: float | None = None) -> Sample:
    """Parse a ``dt/<thing>/env`` payload ``{"temperature","humidity","ts","seq"}``.

    ``ts`` may be seconds or milliseconds; an unset device clock falls back to the receive time.

    Raises:
        TelemetryError: not JSON, not an object, or a field of the wrong type.
    """
    received = time.time() if received is None else received
    if isinstance(payload, dict):
        doc = payload
    else:
        try:
            doc = json.loads(payload)
        except (ValueError, UnicodeDecodeError) as exc:
            raise TelemetryError(f"telemetry from {thing} is not JSON ({exc})") from exc
    if not isinstance(doc, dict):
        raise TelemetryError(f"telemetry from {thing} is not a JSON object")
    temperature = _num(doc.get("temperature"), "temperature")
    humidity = _num(doc.get("humidity"), "humidity")
    if temperature is None and humidity is None:
        raise TelemetryError(f"telemetry from {thing} has neither temperature nor humidity")
    ts = _num(doc.get("ts"), "ts")
    if ts is not None and ts > 1e11:  # milliseconds
        ts /= 1000.0
    if ts is None or ts < PLAUSIBLE_TS or ts > received + 86_400:
        ts = received
    seq = doc.get("seq", -1)
    if isinstance(seq, bool) or not isinstance(seq, int):
        raise TelemetryError(f"telemetry from {thing}: seq is not an integer: {seq!r}")
    return Sample(thing, ts, temperature, humidity, seq, received)


def parse_time(text: str, now: float | None = None) -> float:
    """Parse ``--since``/``--until``: epoch seconds, ISO 8601, or a relative age ``90s``, ``15m``,
    ``2h``, ``7d`` (meaning that long ago).

    Raises:
        TelemetryError: the text is none of these.
    """
    now = time.time() if now is None else now
    t = text.strip()
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if t and t[-1] in units:
        try:
            return now - float(t[:-1]) * units[t[-1]]
        except ValueError:
            pass
    try:
        return float(t)
    except ValueError:
        pass
    try:
        dt = datetime.datetime.fromisoformat(t.replace("Z", "+00:00"))
    except ValueError as exc:
        raise TelemetryError(
            f"cannot read the time {text!r}",
            "use epoch seconds, ISO 8601 (2026-11-23T10:00:00Z) or an age like 15m, 2h, 7d",
        ) from exc
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=datetime.timezone.utc)
    return dt.timestamp()


class TelemetryStore:
    """SQLite (WAL) telemetry history.

    Args:
        path: database file; default ``<data dir>/telemetry.sqlite3``.
        retention_days: samples older than this are removed by :meth:`prune` (None keeps all).
    """

    def __init__(self, path: str | Path | None = None, retention_days: float | None = DEFAULT_RETENTION_DAYS) -> None:
        self.path = Path(path) if path else data_dir() / "telemetry.sqlite3"
        self.retention_days = retention_days
        self._lock = threading.RLock()
        self._ids: dict[str, int] = {}
        self._last_prune: float | None = None  # monotonic time of the last prune; None: never (prune on the first insert)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise ConfigError(
                f"the telemetry database {self.path} cannot be opened ({exc})",
                "move the file away (history will start empty) or free disk space",
            ) from exc
        for tid, name in self._db.execute("SELECT id, name FROM things"):
            self._ids[name] = tid

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> "TelemetryStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _thing_id(self, name: str) -> int:
        tid = self._ids.get(name)
        if tid is None:
            self._db.execute("INSERT OR IGNORE INTO things(name) VALUES (?)", (name,))
            tid = self._db.execute("SELECT id FROM things WHERE name=?", (name,)).fetchone()[0]
            self._ids[name] = tid
        return tid

    # ------------------------------------------------------------------ writes
    def insert_many(self, samples: Iterable[Sample]) -> int:
        """Store a batch in one transaction; duplicates (same thing, ts, seq) are ignored.

        Returns:
            The number of new rows.
        """
        with self._lock:
            db = self._db
            db.execute("BEGIN")
            try:
                rows = [(self._thing_id(s.thing), s.ts, s.seq, s.temperature, s.humidity) for s in samples]
                before = db.total_changes
                db.executemany(
                    "INSERT OR IGNORE INTO samples(thing_id, ts, seq, temperature, humidity) VALUES (?,?,?,?,?)",
                    rows)
                added = db.total_changes - before
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                self._ids = {n: i for i, n in db.execute("SELECT id, name FROM things")}
                raise
        if self.retention_days and (self._last_prune is None or time.monotonic() - self._last_prune > 600):
            self.prune()
        return added

    def prune(self, now: float | None = None) -> int:
        """Delete samples older than the retention setting. Returns the number removed."""
        self._last_prune = time.monotonic()
        if not self.retention_days:
            return 0
        cutoff = (time.time() if now is None else now) - self.retention_days * 86400
        with self._lock:
            cur = self._db.execute("DELETE FROM samples WHERE ts < ?", (cutoff,))
            return cur.rowcount

    # ------------------------------------------------------------------ reads
    def things(self) -> list[str]:
        """Names of every thing with stored history."""
        with self._lock:
            return [r[0] for r in self._db.execute("SELECT name FROM things ORDER BY name")]

    def count(self, thing: str | None = None) -> int:
        """Number of stored samples (for one thing or all)."""
        with self._lock:
            if thing is None:
                return self._db.execute("SELECT COUNT(*) FROM samples").fetchone()[0]
            tid = self._ids.get(thing)
            if tid is None:
                return 0
            return self._db.execute("SELECT COUNT(*) FROM samples WHERE thing_id=?", (tid,)).fetchone()[0]

    def _rows(self, thing: str, since: float | None, until: float | None) -> list[tuple]:
        tid = self._ids.get(thing)
        if tid is None:
            return []
        lo = -math.inf if since is None else since
        hi = math.inf if until is None else until
        with self._lock:
            return self._db.execute(
                "SELECT ts, temperature, humidity, seq FROM samples WHERE thing_id=? AND ts>=? AND ts<=? ORDER BY ts",
                (tid, lo, hi)).fetchall()

    def query(self, thing: str, since: float | None = None, until: float | None = None) -> list[Sample]:
        """Samples of one thing with ``since <= ts <= until``, oldest first."""
        return [Sample(thing, ts, t, h, seq) for ts, t, h, seq in self._rows(thing, since, until)]

    def arrays(self, thing: str, since: float | None = None, until: float | None = None):
        """The same range as compact numpy arrays for charts: (ts float64, temperature float32,
        humidity float32); a missing value is NaN."""
        import numpy as np

        tid = self._ids.get(thing)
        if tid is None:
            return np.empty(0), np.empty(0, np.float32), np.empty(0, np.float32)
        lo = -math.inf if since is None else since
        hi = math.inf if until is None else until
        with self._lock:
            rows = self._db.execute(
                "SELECT ts, IFNULL(temperature, ?), IFNULL(humidity, ?) FROM samples "
                "WHERE thing_id=? AND ts>=? AND ts<=? ORDER BY ts", (_NULL, _NULL, tid, lo, hi)).fetchall()
        flat = np.array(rows, dtype=np.float64).reshape(-1, 3)
        temp = flat[:, 1].astype(np.float32)
        hum = flat[:, 2].astype(np.float32)
        temp[flat[:, 1] == _NULL] = np.nan
        hum[flat[:, 2] == _NULL] = np.nan
        return flat[:, 0].copy(), temp, hum

    def latest(self) -> dict[str, Sample]:
        """The newest sample of every thing (to seed the fleet table at start-up)."""
        out: dict[str, Sample] = {}
        names = {i: n for n, i in self._ids.items()}
        with self._lock:
            rows = self._db.execute(
                "SELECT s.thing_id, s.ts, s.temperature, s.humidity, s.seq FROM samples s "
                "JOIN (SELECT thing_id, MAX(ts) AS mts FROM samples GROUP BY thing_id) m "
                "ON s.thing_id = m.thing_id AND s.ts = m.mts").fetchall()
        for tid, ts, t, h, seq in rows:
            if tid in names:
                out[names[tid]] = Sample(names[tid], ts, t, h, seq)
        return out

    def seq_report(self, since: float | None = None) -> dict[str, dict]:
        """Per thing: stored samples, lowest/highest seq and how many seqs in between are missing.

        Only meaningful for a stretch without device reboots (seq restarts at boot).
        """
        names = {i: n for n, i in self._ids.items()}
        lo = -math.inf if since is None else since
        with self._lock:
            rows = self._db.execute(
                "SELECT thing_id, COUNT(DISTINCT seq), MIN(seq), MAX(seq) FROM samples "
                "WHERE ts >= ? AND seq >= 0 GROUP BY thing_id", (lo,)).fetchall()
        return {
            names.get(tid, str(tid)): {"count": n, "min_seq": a, "max_seq": b, "missing": (b - a + 1) - n}
            for tid, n, a, b in rows
        }

    # ------------------------------------------------------------------ export
    def export(self, thing: str, since: float | None, until: float | None, fmt: str, out: TextIO) -> int:
        """Write a range as CSV (header row) or JSON (an array of objects). Returns the row count.

        Raises:
            TelemetryError: unknown format.
        """
        if fmt not in ("csv", "json"):
            raise TelemetryError(f"unknown export format {fmt!r}", "use csv or json")
        rows = self._rows(thing, since, until)
        if fmt == "csv":
            w = csv.writer(out, lineterminator="\n")
            w.writerow(["thing", "ts", "time_utc", "temperature", "humidity", "seq"])
            for ts, t, h, seq in rows:
                w.writerow([thing, f"{ts:.3f}", _iso(ts), "" if t is None else t, "" if h is None else h, seq])
        else:
            out.write("[")
            for i, (ts, t, h, seq) in enumerate(rows):
                out.write(("," if i else "") + "\n" + json.dumps(
                    {"thing": thing, "ts": ts, "time_utc": _iso(ts), "temperature": t, "humidity": h, "seq": seq}))
            out.write("\n]\n")
        return len(rows)

    def iter_all(self) -> Iterator[Sample]:
        """Every stored sample (for maintenance and tests)."""
        for name in self.things():
            yield from self.query(name)


def insert_gaps(ts, *series, max_gap: float | None = None):
    """Break lines where the device was silent: insert a NaN point after every interval longer
    than ``max_gap`` seconds (default: 3x the median interval, at least 30 s), so a chart shows
    a gap instead of joining the points. Returns (ts, *series) as new numpy arrays."""
    import numpy as np

    ts = np.asarray(ts, dtype=np.float64)
    if len(ts) < 2:
        return (ts, *[np.asarray(x) for x in series])
    d = np.diff(ts)
    if max_gap is None:
        max_gap = max(3.0 * float(np.median(d)), 30.0)
    idx = np.nonzero(d > max_gap)[0] + 1
    if not len(idx):
        return (ts, *[np.asarray(x) for x in series])
    out_ts = np.insert(ts, idx, ts[idx - 1] + d[idx - 1] / 2)
    out = [np.insert(np.asarray(x, dtype=np.float32 if np.asarray(x).dtype == np.float32 else np.float64),
                     idx, np.nan) for x in series]
    return (out_ts, *out)


def _iso(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")
