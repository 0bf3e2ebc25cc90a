"""`fleetdesk line status`: every station of the ledger, PASS/FAIL by cause, boards/hour, the pool."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

from fleetdesk.boards.line import line_status, write_csv
from fleetdesk.store.production import ProductionDB


def _attempt(db, station, result, error=None, when="2026-12-07T10:00:00Z", mac=None):
    run = db.start_run(station=station)
    db.finish(run, {"station": station, "result": result, "error": error, "time": when, "mac": mac})


def test_status_counts_each_station_and_its_causes(ledger_target, tmp_path):
    db = ProductionDB(ledger_target, key_file=tmp_path / "k")
    _attempt(db, "st-1", "PASS", when="2026-12-07T10:00:00Z")
    _attempt(db, "st-1", "PASS", when="2026-12-07T10:30:00Z")
    _attempt(db, "st-1", "FAIL", "Failed to connect to ESP32: No serial data received.", "2026-12-07T11:00:00Z")
    _attempt(db, "st-2", "PASS", when="2026-12-07T11:00:00Z")
    _attempt(db, "st-2", "PASS", when="2026-12-07T09:00:00Z")  # before the shift
    db.start_run(station="st-2")  # a board on it right now
    status = line_status(db, since_hours=2, now=1796644800.0)  # 2026-12-07T12:00:00Z
    by = {s["station"]: s for s in status["stations"]}
    assert by["st-1"]["pass"] == 2 and by["st-1"]["fail"] == 1 and by["st-1"]["boards_per_hour"] == 2.0
    assert list(by["st-1"]["causes"].values()) == [1] and "unknown" not in by["st-1"]["causes"]
    assert by["st-2"]["pass"] == 1 and by["st-2"]["open_runs"] == 1
    assert by["st-1"]["state"] == "idle"  # this process beats as st-1 (its first run's station), nothing open
    assert by["st-2"]["state"] == "no heartbeat"  # no process says it is st-2
    assert status["totals"] == {"pass": 3, "fail": 1, "stations_alive": 1}
    assert write_csv(status, tmp_path / "line.csv") == 2
    rows = list(csv.DictReader(open(tmp_path / "line.csv")))
    assert [r["station"] for r in rows] == ["st-1", "st-2"] and rows[0]["pass"] == "2"


def test_cli_reads_the_line_ledger(pg_server, tmp_path):
    url = pg_server.create_db("line")
    db = ProductionDB(url, key_file=tmp_path / "k")
    import time

    _attempt(db, "st-9", "PASS", when=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    db.close()
    res = subprocess.run([sys.executable, "-m", "fleetdesk", "--ledger", url, "line", "status", "--json"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert [(s["station"], s["pass"]) for s in doc["stations"]] == [("st-9", 1)]
    assert "pool" in doc and doc["pool"]["free"] == 0


def test_a_station_without_a_name_goes_by_its_host(ledger_target, tmp_path):
    import socket

    db = ProductionDB(ledger_target, key_file=tmp_path / "k")
    _attempt(db, "", "PASS", when="2026-12-07T11:00:00Z")
    status = line_status(db, since_hours=2, now=1796644800.0)
    assert [(s["station"], s["pass"], s["state"]) for s in status["stations"]] == [(socket.gethostname(), 1, "idle")]
