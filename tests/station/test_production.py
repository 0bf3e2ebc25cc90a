"""Production record: rows per attempt, re-flash flag, CSV, journal and unfinished runs."""

from __future__ import annotations

import csv
import sqlite3

from fleetdesk.boards.advice import advise
from fleetdesk.store.production import ATTEMPT_COLUMNS, ProductionDB


def test_attempts_reflash_flag_and_csv(tmp_path):
    db = ProductionDB(tmp_path / "p.sqlite3")
    run = db.start_run(station="s1", port="socket://x")
    db.step(run, "detect", "done", {"chip": "ESP32"}, mac="aa:bb")
    db.finish(run, {"port": "socket://x", "mac": "aa:bb", "chip": "ESP32", "result": "PASS", "thing": "fd-aabb",
                    "certificate_id": "c" * 64, "bundle_sha256": "0" * 64, "duration_s": 3.5, "operator": "ann"})
    db.finish(None, {"mac": "aa:bb", "result": "FAIL", "error": "killed"})
    db.finish(None, {"mac": "cc:dd", "result": "FAIL", "error": "x"})
    rows = db.attempts()
    assert [(r["mac"], r["result"], r["reflash"]) for r in rows] == [
        ("aa:bb", "PASS", 0), ("aa:bb", "FAIL", 1), ("cc:dd", "FAIL", 0)]
    assert db.device("aa:bb").thing == "fd-aabb" and db.device("cc:dd") is None
    assert db.counters() == {"PASS": 1, "FAIL": 2}
    assert db.unfinished_runs() == []
    n = db.export_csv(tmp_path / "out.csv")
    with open(tmp_path / "out.csv") as f:
        lines = list(csv.DictReader(f))
    assert n == 3 and list(lines[0].keys()) == list(ATTEMPT_COLUMNS) and lines[0]["operator"] == "ann"
    mode = sqlite3.connect(tmp_path / "p.sqlite3").execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_unfinished_run_survives_reopen(tmp_path):
    db = ProductionDB(tmp_path / "p.sqlite3")
    run = db.start_run(port="p1")
    db.step(run, "identity", "done", "", thing="fd-1", certificate_id="c1", thing_created=1)
    db.step(run, "write", "begin")
    db.close()
    db2 = ProductionDB(tmp_path / "p.sqlite3")
    (u,) = db2.unfinished_runs()
    assert (u["thing"], u["certificate_id"], u["last_step"]) == ("fd-1", "c1", "write:begin")
    db2.mark_recovered(run, "cert deactivated")
    assert db2.unfinished_runs() == [] and db2.run(run)["recovered"] == "cert deactivated"
    assert db2.attempts() == []  # no half-written attempt row


def test_operator_advice_for_common_failures():
    assert "hold BOOT and press EN" in advise("A fatal error occurred: No serial data received.").action
    assert advise("Failed to connect to ESP32: Timed out waiting for packet header").code == "failed-to-connect"
    perm = advise("could not open port /dev/ttyUSB0: [Errno 13] Permission denied", platform="linux")
    assert "dialout" in perm.action
    assert "CP210x" in advise("[Errno 5] Input/output error", platform="win32").action
    assert advise("Failed at 460800 baud (x); falling back to 115200 baud").code == "baud-fallback"
    assert advise("something new").code == "unknown"


def test_logs_never_keep_private_keys(tmp_path):
    db = ProductionDB(tmp_path / "p.sqlite3")
    run = db.start_run()
    db.save_logs(run, console=["boot ok", "-----BEGIN RSA PRIVATE KEY-----", "MIIEow...", "-----END RSA PRIVATE KEY-----",
                               "online"])
    text = db.logs(run)["console"]
    assert "MIIEow" not in text and "boot ok" in text and "online" in text
