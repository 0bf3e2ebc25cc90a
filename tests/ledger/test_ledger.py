"""The one data-access layer: the same production record, pool and schema on SQLite and
PostgreSQL; versioned migrations; a newer schema refused."""

from __future__ import annotations

import threading

import pytest

from fleetdesk.boards.certpool import CertPool, PoolEmpty
from fleetdesk.store.ledger import Ledger, LedgerError, check_url
from fleetdesk.store.production import ProductionDB
from fleetdesk.store.schema import LATEST, SchemaTooNew, version

MAC = "24:0a:c4:00:00:01"


def test_production_record_round_trip(ledger_target, tmp_path):
    db = ProductionDB(ledger_target, key_file=tmp_path / "station.key")
    run = db.start_run(station="st-1", port="socket://a", slot="1")
    db.step(run, "identity", "done", {"thing": "fd-1"}, mac=MAC, thing="fd-1", certificate_id="c1")
    assert [r["run_id"] for r in db.unfinished_runs()] == [run]
    assert db.unfinished_runs()[0]["last_step"] == "identity:done"
    backup = db.save_backup(MAC, "vfs", 0x200000, b"\x00secret identity\xff")
    attempt = db.finish(run, {"station": "st-1", "mac": MAC, "thing": "fd-1", "certificate_id": "c1",
                              "result": "PASS", "duration_s": 12.25, "product": "alpha"})
    db.save_logs(run, console=["boot", "online as fd-1"])
    db.save_logs(run, console=["boot again"])  # replaces, never a second row
    db.set_slot_label("st-1", "1", "left front")

    again = ProductionDB(ledger_target, key_file=tmp_path / "station.key")  # another handle, same ledger
    assert again.unfinished_runs() == []
    assert again.attempt(attempt)["duration_s"] == 12.25 and again.attempt(attempt)["reflash"] == 0
    assert again.device(MAC).thing == "fd-1" and again.device(MAC).product == "alpha"
    assert again.passed_with("c1") and not again.passed_with("c2")
    assert again.logs(run) == {"console": "boot again"}
    assert again.latest_backup(MAC, "vfs") == (0x200000, b"\x00secret identity\xff")
    assert again.backup_formats() == {"fdsb1": 1} and backup
    assert again.slot_labels("st-1") == {"1": "left front"} and again.slot_labels("st-2") == {}
    assert again.counters() == {"PASS": 1, "FAIL": 0}
    second = again.start_run(station="st-2")
    again.finish(second, {"mac": MAC, "result": "PASS"})
    assert [a["reflash"] for a in again.attempts(MAC)] == [0, 1]
    assert again.mark_recovered(second, "closed") is False  # finished runs are never recovered
    assert again.journal(run)[0]["step"] == "identity"
    again.close()
    db.close()


def test_a_fresh_ledger_is_at_the_latest_version_and_a_newer_one_is_refused(ledger_target):
    ledger = Ledger(ledger_target)
    assert version(ledger) == LATEST
    ledger.run("INSERT INTO schema_version(version) VALUES (?)", (LATEST + 1,))
    ledger.close()
    with pytest.raises(SchemaTooNew) as err:
        Ledger(ledger_target)
    assert f"schema version {LATEST + 1}" in str(err.value) and "upgrade Fleetdesk" in str(err.value)


def test_pool_hands_each_certificate_to_exactly_one_board(ledger_target, tmp_path):
    """Eight threads, each with its own handle (connection) on the ledger, take certificates
    at once: every board gets one, none twice; the pool then says it is empty."""
    pool = CertPool(tmp_path, ledger=ledger_target)
    store = pool.line or pool.ledger  # the line's pool, or the station's own
    for i in range(6):
        store.run("INSERT INTO pool(certificate_id, certificate_arn, certificate_pem, key_enc, created)"
                        " VALUES (?,?,?,?,?)", (f"{i:064x}", f"arn:cert/{i}", "CERT",
                                                pool.box.seal(f"KEY{i}".encode()), float(i)))
    got, empty, errors = {}, [], []

    def board(n: int) -> None:
        mine = CertPool(tmp_path, ledger=ledger_target)
        try:
            cert = mine.take(f"24:0a:c4:00:01:{n:02x}", f"fd-{n}")
            got[n] = (cert.certificate_id, cert.private_key_pem)
        except PoolEmpty:
            empty.append(n)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            mine.close()

    threads = [threading.Thread(target=board, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert len(got) == 6 and len(empty) == 2
    assert len({c for c, _ in got.values()}) == 6, f"a certificate was handed out twice: {got}"
    assert all(key == f"KEY{int(c, 16)}" for c, key in got.values())
    assert pool.level() == 0 and pool.pending() == 6


def test_line_pool_hands_out_only_what_this_station_can_open(pg_server, tmp_path):
    """On a line ledger a station takes only rows sealed with its data key (the line key it
    shares, or its own share): another station's row would not open here."""
    url = pg_server.create_db("line")
    a, b = CertPool(tmp_path / "a", ledger=url), CertPool(tmp_path / "b", ledger=url)
    a.line.run("INSERT INTO pool(certificate_id, certificate_arn, certificate_pem, key_enc, created)"
                 " VALUES (?,?,?,?,?)", ("a" * 64, "arn:cert/a", "CERT", a.box.seal(b"KEY-A"), 1.0))
    b.box.ensure_key()
    assert a.level() == 1 and b.level() == 0 and b.line_level() == 1
    with pytest.raises(PoolEmpty):
        b.take(MAC, "fd-1")
    assert a.take(MAC, "fd-1").private_key_pem == "KEY-A"


def test_remote_ledger_without_certificate_verification_is_refused():
    with pytest.raises(LedgerError, match="verify-full"):
        check_url("postgresql://line@db.factory.example/ledger?sslmode=require")
    with pytest.raises(LedgerError, match="not a postgresql"):
        check_url("mysql://line@db/ledger")
    check_url("postgresql://line@db.factory.example/ledger?sslmode=verify-full")
    check_url("postgresql://line@127.0.0.1:5432/ledger")


def test_the_configured_ledger_holds_every_store(pg_server, monkeypatch):
    """FLEETDESK_LEDGER (what --ledger sets), else the Settings field: the production record and
    the pool of a station open the line's database, not the station's SQLite files."""
    from fleetdesk.paths import data_dir
    from fleetdesk.store.ledger import save_ledger_setting

    url = pg_server.create_db("line")
    save_ledger_setting(url)
    db, pool = ProductionDB(), CertPool()
    assert db.ledger.kind == pool.line.kind == "postgresql"  # the pool: the line's, and this station's share
    db.finish(db.start_run(station="st-1"), {"result": "FAIL", "error": "x"})
    assert not (data_dir() / "production.sqlite3").exists() and not (data_dir() / "certpool.sqlite3").exists()
    save_ledger_setting(None)
    other = pg_server.create_db("line")
    monkeypatch.setenv("FLEETDESK_LEDGER", other)
    assert ProductionDB().counters() == {"PASS": 0, "FAIL": 0}  # the env's database
    monkeypatch.setenv("FLEETDESK_LEDGER", url)
    assert ProductionDB().counters() == {"PASS": 0, "FAIL": 1}
    with pytest.raises(LedgerError, match="not a postgresql"):
        save_ledger_setting("sqlite:///x")


def _run_on(db: ProductionDB, host: str, pid: int, station: str = "st-x") -> str:
    run = db.start_run(station=station)
    db.ledger.run("UPDATE runs SET host=?, pid=?, proc_start=? WHERE run_id=?", (host, pid, "77", run))
    return run


def _beat(db: ProductionDB, host: str, pid: int, age: float) -> None:
    now = db.ledger.now_sql
    db.ledger.run(f"INSERT INTO stations(host, pid, proc_start, station, started_at, heartbeat_at)"
                  f" VALUES (?,?,?,?,{now} - ?,{now} - ?)", (host, pid, "77", "st-x", age, age))


def test_heartbeats_tell_a_dead_station_from_a_live_one(ledger_target, tmp_path):
    """A run of another PC: its station's fresh heartbeat keeps it that station's; a stale
    one makes it a dead station's run, which any station may close; with no heartbeat on
    file nothing is assumed."""
    from fleetdesk.store.production import HEARTBEAT_S, STALE_AFTER

    db = ProductionDB(ledger_target, key_file=tmp_path / "k")
    live, dead, unknown = _run_on(db, "pc-live", 11), _run_on(db, "pc-dead", 12), _run_on(db, "pc-old", 13)
    _beat(db, "pc-live", 11, 0.5)
    _beat(db, "pc-dead", 12, HEARTBEAT_S * STALE_AFTER + 5)
    owners = {r["run_id"]: db.owner(r) for r in db.unfinished_runs()}
    assert owners[live] == "other-host" and owners[dead] == "dead" and owners[unknown] == "other-host"
    mine = [s for s in db.stations() if s["pid"] not in (11, 12)]
    assert mine and mine[0]["alive"]  # this process beats since its first run
    assert {s["host"]: s["alive"] for s in db.stations()}["pc-dead"] is False


def test_one_board_is_given_its_identity_by_one_run_at_a_time(ledger_target, tmp_path):
    from fleetdesk.store.production import BoardBusy

    a = ProductionDB(ledger_target, key_file=tmp_path / "k")
    b = ProductionDB(ledger_target, key_file=tmp_path / "k")
    first, second = a.start_run(station="st-1"), b.start_run(station="st-2")
    a.lock_board(MAC, first, "st-1")
    a.lock_board(MAC, first, "st-1")  # the same run again: fine
    with pytest.raises(BoardBusy, match="station st-1"):
        b.lock_board(MAC, second, "st-2")
    a.finish(first, {"mac": MAC, "result": "PASS"})
    b.lock_board(MAC, second, "st-2")  # released when its run finished
    crashed = _run_on(a, "pc-dead", 12)
    a.ledger.run("UPDATE board_locks SET run_id=? WHERE mac=?", (crashed, MAC))
    _beat(a, "pc-dead", 12, 3600)
    b.lock_board(MAC, second, "st-2")  # a dead station's lock is taken over
    assert a.serial_for(MAC) == a.serial_for(MAC) != b.serial_for("24:0a:c4:00:00:02")


def test_a_pool_on_an_open_ledger_handle_uses_it(ledger_target, tmp_path):
    """CertPool given a Ledger (not a path or URL): a station's own SQLite handle is the pool
    itself; a line's PostgreSQL handle is the line's pool, with this station's share beside it."""
    handle = Ledger(ledger_target)
    pool = CertPool(tmp_path, ledger=handle)
    try:
        if handle.shared:
            assert pool.line is handle and pool.ledger is not handle and pool.ledger.kind == "sqlite"
        else:
            assert pool.ledger is handle and pool.line is None
        (pool.line or pool.ledger).run(
            "INSERT INTO pool(certificate_id, certificate_arn, certificate_pem, key_enc, created) VALUES (?,?,?,?,?)",
            ("c" * 64, "arn:cert/c", "CERT", pool.box.seal(b"KEY-C"), 1.0))
        assert pool.level() == 1 and pool.take(MAC, "fd-1").private_key_pem == "KEY-C"
    finally:
        pool.close()
