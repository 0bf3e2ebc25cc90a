"""Offline: a line station whose PostgreSQL ledger goes away keeps recording into its local
outbox (SQLite, same schema) and syncs it into the line's database when it is back, once."""

from __future__ import annotations

import pytest

import fleetdesk.store.outbox as outbox
from fleetdesk.store.ledger import Ledger
from fleetdesk.store.production import ProductionDB
from pg_server import PgServer

MAC = "24:0a:c4:00:00:{:02x}"


@pytest.fixture
def own_server():
    server = PgServer()  # this test stops and starts it: not the session's shared one
    try:
        yield server
    finally:
        server.stop()


def _board(db, n: int, result: str = "PASS") -> str:
    run = db.start_run(station="st-1", port=f"socket://b{n}")
    db.step(run, "detect", "done", mac=MAC.format(n))
    db.step(run, "identity", "done", thing=f"fd-{n}", certificate_id=f"{n:064x}")
    db.finish(run, {"station": "st-1", "mac": MAC.format(n), "thing": f"fd-{n}", "result": result})
    db.save_logs(run, console=[f"online as fd-{n}"])
    return run


def test_offline_boards_sync_once_when_the_ledger_is_back(own_server, tmp_path, monkeypatch):
    monkeypatch.setattr(outbox, "RECONNECT_S", 0.0)  # try the database again at every call
    url = own_server.create_db("line")
    db = ProductionDB(url, key_file=tmp_path / "k")
    first = _board(db, 1)
    half = db.start_run(station="st-1", port="socket://b2")  # this board's database goes away mid-run
    own_server.pause()
    db.step(half, "detect", "done", mac=MAC.format(2))  # -> the outbox
    assert db.offline
    db.finish(half, {"station": "st-1", "mac": MAC.format(2), "result": "PASS"})
    offline = [_board(db, n) for n in (3, 4)]
    assert db.offline and {a["mac"] for a in db.attempts()} == {MAC.format(n) for n in (2, 3, 4)}

    own_server.resume()
    assert len(db.attempts()) == 4 and not db.offline  # the first call after: synced, online again
    line = Ledger(url)
    rows = line.all("SELECT run_id, mac, result FROM attempts ORDER BY id")
    assert sorted(r["mac"] for r in rows) == sorted(MAC.format(n) for n in (1, 2, 3, 4))
    assert all(r["result"] == "PASS" for r in rows) and len({r["run_id"] for r in rows}) == 4
    assert {r["run_id"] for r in rows} == {first, half, *offline}
    assert line.all("SELECT run_id FROM runs WHERE finished_at IS NULL") == []
    assert len(line.all("SELECT * FROM journal WHERE run_id=?", (offline[0],))) == 2
    assert db.logs(offline[1]) == {"console": "online as fd-4"}
    assert db.device(MAC.format(3)).thing == "fd-3"
    assert db.sync_outbox() == {"runs": 0, "journal": 0, "attempts": 0}  # nothing twice
    again = Ledger(url).all("SELECT COUNT(*) AS n FROM journal")[0]["n"]
    assert again == len(line.all("SELECT * FROM journal"))


def test_a_station_started_while_the_ledger_is_away_flashes_into_the_outbox(own_server, tmp_path, monkeypatch):
    monkeypatch.setattr(outbox, "RECONNECT_S", 0.0)
    url = own_server.create_db("line")
    own_server.pause()
    db = ProductionDB(url, key_file=tmp_path / "k")
    assert db.offline
    run = _board(db, 7, "FAIL")
    own_server.resume()
    assert [a["run_id"] for a in db.attempts()] == [run] and not db.offline
    assert Ledger(url).one("SELECT result FROM attempts WHERE run_id=?", (run,))["result"] == "FAIL"


def test_line_sync_cli(own_server, tmp_path, monkeypatch):
    import json
    import os
    import subprocess
    import sys

    monkeypatch.setattr(outbox, "RECONNECT_S", 3600.0)  # this process does not sync by itself
    url = own_server.create_db("line")
    own_server.pause()
    db = ProductionDB(url, key_file=tmp_path / "k")
    run = _board(db, 9)
    db.close()
    env = {**os.environ, "FLEETDESK_LEDGER": url}
    down = subprocess.run([sys.executable, "-m", "fleetdesk", "line", "sync"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert down.returncode == 1 and "outbox is kept" in down.stderr
    own_server.resume()
    up = subprocess.run([sys.executable, "-m", "fleetdesk", "line", "sync", "--json"], env=env, capture_output=True,
                        text=True, timeout=60)
    assert up.returncode == 0, up.stderr
    assert json.loads(up.stdout)["attempts"] == 1
    assert Ledger(url).one("SELECT run_id FROM attempts")["run_id"] == run
