"""The line at a glance, from its ledger: every station's state (heartbeat), boards per hour,
PASS/FAIL by cause for the shift, open runs and the pool level. Shared by
`fleetdesk line status` and the Line view; `write_csv` is the view's CSV export.
"""

from __future__ import annotations

import csv
import time
from collections import Counter
from pathlib import Path

from fleetdesk.boards.advice import advise

SHIFT_HOURS = 8.0
CSV_COLUMNS = ("station", "state", "hosts", "pass", "fail", "boards_per_hour", "open_runs", "last_seen_s", "causes")


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _epoch(iso: str) -> float:
    import calendar

    return calendar.timegm(time.strptime(iso, "%Y-%m-%dT%H:%M:%SZ"))


def line_status(db, pool=None, *, since_hours: float = SHIFT_HOURS, now: float | None = None) -> dict:
    """The line's state as one dict (JSON-ready).

    Args:
        db: a ProductionDB on the line's ledger.
        pool: its CertPool (None: no pool figures).
        since_hours: the shift: attempts newer than this count.

    Returns:
        ``{"ledger", "since", "stations": [...], "totals": {...}, "pool": {...}}``; a station has
        ``station, state ("running", "idle", "stopped", "stale" = stopped beating without
        saying so (crashed, or lost the ledger), "no heartbeat"), hosts, pass, fail,
        boards_per_hour (PASS per hour between its first and last attempt of the shift),
        causes ({advice code: count} of its FAILs), open_runs, last_seen_s``.
    """
    now = now or time.time()
    since = now - since_hours * 3600
    rows = db.ledger.all("SELECT a.station, a.time, a.result, a.error, r.host FROM attempts a"
                         " LEFT JOIN runs r ON r.run_id = a.run_id WHERE a.time >= ? ORDER BY a.id", (_iso(since),))
    beats = db.stations()

    def name_of(r) -> str:  # a station without a name (--station) goes by its host's name
        return r.get("station") or r.get("host") or ""

    open_runs = Counter(name_of(r) for r in db.unfinished_runs())
    names = {name_of(r) for r in rows} | {name_of(b) for b in beats} | set(open_runs)
    stations = []
    for name in sorted(names):
        mine = [r for r in rows if name_of(r) == name]
        passed = [r for r in mine if r["result"] == "PASS"]
        causes = Counter(advise(r["error"] or "").code or "unknown" for r in mine if r["result"] != "PASS")
        hb = [b for b in beats if name_of(b) == name]
        alive = [b for b in hb if b["alive"]]
        if alive:
            state = "running" if open_runs.get(name) else "idle"
        elif hb:
            state = "stopped" if all(b.get("stopped_at") for b in hb) else "stale"
        else:
            state = "no heartbeat"
        span_h = 0.0
        if len(mine) > 1:
            span_h = (_epoch(mine[-1]["time"]) - _epoch(mine[0]["time"])) / 3600
        rate = round(len(passed) / max(span_h, 1 / 60), 1) if passed else 0.0
        stations.append({
            "station": name, "state": state, "hosts": sorted({b["host"] for b in hb}),
            "pass": len(passed), "fail": len(mine) - len(passed), "boards_per_hour": rate,
            "causes": dict(causes), "open_runs": open_runs.get(name, 0),
            "last_seen_s": round(min(b["age"] for b in hb), 1) if hb else None,
        })
    totals = {"pass": sum(s["pass"] for s in stations), "fail": sum(s["fail"] for s in stations),
              "stations_alive": sum(s["state"] in ("running", "idle") for s in stations)}
    out = {"ledger": db.ledger.label, "since": _iso(since), "stations": stations, "totals": totals}
    if pool is not None:
        out["pool"] = {"free": pool.line_level(), "pending_sync": pool.pending(), "to_deactivate": pool.failed()}
    return out


def read_line_status(since_hours: float = SHIFT_HOURS) -> dict:
    """`line_status` of the configured ledger (opened and closed here; the line's pool when
    one exists)."""
    from fleetdesk.boards.certpool import CertPool
    from fleetdesk.store.production import ProductionDB

    db = ProductionDB()
    pool = CertPool.existing()
    try:
        return line_status(db, pool, since_hours=since_hours)
    finally:
        db.close()
        if pool is not None:
            pool.close()


def write_csv(status: dict, path: Path | str) -> int:
    """One line per station (``causes`` as ``code=n;...``); returns the rows written."""
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(CSV_COLUMNS))
        w.writeheader()
        for s in status["stations"]:
            w.writerow({**{k: s.get(k) for k in CSV_COLUMNS}, "hosts": " ".join(s["hosts"]),
                        "causes": ";".join(f"{k}={v}" for k, v in sorted(s["causes"].items()))})
    return len(status["stations"])
