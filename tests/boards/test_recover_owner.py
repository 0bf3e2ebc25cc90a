"""Crash recovery knows whose run it is (issue 10 §4, review findings 3, 4 and 11): a run
records the process and host flashing it; `Station.recover()` closes only runs whose process
is gone, leaves another host's runs open (and says so), gives a pooled certificate that was
never written back to the pool and retires a written one, treats a certificate already
deleted as done, and never deactivates a certificate a later run PASSed with."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys

import pytest
from netutil import refused_port

from fleetdesk.boards.certpool import CertPool, PoolEmpty
from fleetdesk.boards.identity import CloudTarget
from fleetdesk.boards.station import Station, StationSettings
from fleetdesk.store.production import ProductionDB, run_owner

pytestmark = [pytest.mark.timeout(120)]

_OPEN_RUN = ("import json, sys, time\nfrom fleetdesk.store.production import ProductionDB\n"
             "db = ProductionDB(sys.argv[1])\nrun = db.start_run(station='crash', port='socket://127.0.0.1:9')\n"
             "for step, status, fields in json.loads(sys.argv[2]):\n    db.step(run, step, status, **fields)\n"
             "print(run, flush=True)\nif sys.argv[3] == 'stay':\n    time.sleep(120)\n")


def _run_in_child(db_path, steps, stay: bool = False):
    """Open and journal a run in another process. ``stay``: it keeps running (a live station);
    else it exits (a killed one). Returns (run_id, process)."""
    proc = subprocess.Popen([sys.executable, "-c", _OPEN_RUN, str(db_path), json.dumps(steps),
                             "stay" if stay else "exit"], stdout=subprocess.PIPE, text=True)
    run_id = proc.stdout.readline().strip()
    if not stay:
        proc.wait(60)
    return run_id, proc


def _minted(cert_id: str, mac: str = "24:6f:28:00:00:99", written: bool = True) -> list:
    steps = [["detect", "done", {"mac": mac}],
             ["identity", "done", {"thing": "fd-" + mac.replace(":", ""), "certificate_id": cert_id}]]
    return steps + ([["write", "begin", {}]] if written else [])


def _status(cloud, cert_id: str) -> str:
    return cloud.iot.describe_certificate(certificateId=cert_id)["certificateDescription"]["status"]


@pytest.fixture
def cloud(sandbox):
    return CloudTarget.from_sandbox(sandbox.state_dir)


@pytest.fixture
def station_for(bundle_dir, cloud):
    made = []

    def make(db, **kw):
        s = Station(StationSettings(bundle=str(bundle_dir), identity=True, station="recover", **kw), cloud=cloud, db=db)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


def test_an_old_database_gains_the_owner_columns_and_its_open_runs_count_as_crashed(tmp_path):
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as con:  # the runs table as versions before this one made it
        con.execute("CREATE TABLE runs (run_id TEXT PRIMARY KEY, started_at REAL NOT NULL, finished_at REAL,"
                    " station TEXT, port TEXT, slot TEXT, mac TEXT, thing TEXT, certificate_id TEXT,"
                    " thing_created INTEGER DEFAULT 0, result TEXT, recovered TEXT)")
        con.execute("INSERT INTO runs(run_id, started_at, port) VALUES ('old', 1.0, 'COM3')")
    db = ProductionDB(path)
    (old,) = db.unfinished_runs()
    assert old["pid"] is None and old["host"] is None and run_owner(old) == "dead"
    fresh = db.run(db.start_run(port="COM4"))
    assert fresh["pid"] == os.getpid() and fresh["host"] and run_owner(fresh) == "live"
    ProductionDB(path).close()  # a second open finds the columns there
    db.close()


def test_a_reused_pid_does_not_make_a_dead_run_live(tmp_path):
    db = ProductionDB(tmp_path / "p.sqlite3")
    run = db.run(db.start_run(port="COM5"))
    if run["proc_start"] is None:
        pytest.skip("this OS does not tell when a process started")
    assert run_owner({**run, "proc_start": "1"}) == "dead"  # the pid now names another process
    assert run_owner({**run, "host": "another-station-pc"}) == "other-host"


@pytest.mark.slow
def test_recover_closes_only_runs_whose_process_is_gone(tmp_path, cloud, station_for):
    path = tmp_path / "prod.sqlite3"
    live_cert, dead_cert, remote_cert = (cloud.iot.create_keys_and_certificate(setAsActive=True)["certificateId"]
                                         for _ in range(3))
    live_run, live = _run_in_child(path, _minted(live_cert), stay=True)
    try:
        dead_run, _ = _run_in_child(path, _minted(dead_cert))
        remote_run, _ = _run_in_child(path, _minted(remote_cert))
        db = ProductionDB(path)
        db.ledger.run("UPDATE runs SET host='another-station-pc' WHERE run_id=?", (remote_run,))

        out = {r["run_id"]: r for r in station_for(db).recover()}
        assert live_run not in out and _status(cloud, live_cert) == "ACTIVE", "a live station's run was recovered"
        assert out[dead_run]["action"] == "orphan certificate deactivated" and _status(cloud, dead_cert) == "INACTIVE"
        assert out[remote_run].get("left_open") and "another-station-pc" in out[remote_run]["action"]
        assert _status(cloud, remote_cert) == "ACTIVE"
        assert {r["run_id"] for r in db.unfinished_runs()} == {live_run, remote_run}
    finally:
        live.kill()
        live.wait(10)
        live.stdout.close()
    out = {r["run_id"]: r for r in station_for(db).recover()}  # the live station died since
    assert out[live_run]["action"] == "orphan certificate deactivated" and _status(cloud, live_cert) == "INACTIVE"
    assert [r["run_id"] for r in db.unfinished_runs()] == [remote_run]


@pytest.mark.slow
def test_recover_gives_back_an_unwritten_pooled_certificate_and_retires_a_written_one(tmp_path, cloud, station_for):
    pool = CertPool()
    assert pool.refill(cloud, 2) == 2
    unwritten = pool.take("24:6f:28:00:00:01", "fd-246f28000001")
    written = pool.take("24:6f:28:00:00:02", "fd-246f28000002")
    path = tmp_path / "prod.sqlite3"
    _run_in_child(path, _minted(unwritten.certificate_id, "24:6f:28:00:00:01", written=False))
    _run_in_child(path, _minted(written.certificate_id, "24:6f:28:00:00:02"))
    db = ProductionDB(path)

    out = station_for(db).recover()  # a station without the pool still tidies it
    assert db.unfinished_runs() == [], [r["action"] for r in out]
    assert pool.state(unwritten.certificate_id) == "free" and _status(cloud, unwritten.certificate_id) == "ACTIVE"
    assert pool.state(written.certificate_id) == "retired" and _status(cloud, written.certificate_id) == "INACTIVE"
    again = pool.take("24:6f:28:00:00:02", "fd-246f28000002")
    assert again.certificate_id == unwritten.certificate_id  # never the retired one


@pytest.mark.slow
def test_recover_offline_retires_a_written_pooled_certificate_for_the_next_sync(tmp_path, cloud, station_for):
    import boto3
    from botocore.config import Config

    pool = CertPool()
    assert pool.refill(cloud, 1) == 1
    cert = pool.take("24:6f:28:00:00:03", "fd-246f28000003")
    path = tmp_path / "prod.sqlite3"
    _run_in_child(path, _minted(cert.certificate_id, "24:6f:28:00:00:03"))
    dead = boto3.client("iot", endpoint_url=f"https://127.0.0.1:{refused_port()}", region_name="us-east-1", aws_access_key_id="x",
                        aws_secret_access_key="y", verify=False,
                        config=Config(connect_timeout=1, retries={"max_attempts": 1}))
    offline = Station(StationSettings(bundle=station_for(ProductionDB(path)).settings.bundle, offline_pool=True),
                      cloud=CloudTarget(dead, "x", 1, "us-east-1", b""), db=ProductionDB(path))
    try:
        (rec,) = offline.recover()
    finally:
        offline.close()
    assert "set INACTIVE at the next sync" in rec["action"]
    assert pool.state(cert.certificate_id) == "failed" and _status(cloud, cert.certificate_id) == "ACTIVE"
    with pytest.raises(PoolEmpty):
        pool.take("24:6f:28:00:00:03", "fd-246f28000003")  # not handed out again (and the pool is empty)
    assert pool.sync(cloud) == [] and _status(cloud, cert.certificate_id) == "INACTIVE"
    assert pool.state(cert.certificate_id) == "retired"


@pytest.mark.slow
def test_recover_leaves_a_certificate_a_later_run_passed_with(tmp_path, cloud, station_for):
    cert = cloud.iot.create_keys_and_certificate(setAsActive=True)["certificateId"]
    path = tmp_path / "prod.sqlite3"
    crashed, _ = _run_in_child(path, _minted(cert))
    db = ProductionDB(path)
    later = db.start_run(port="COM6")  # e.g. an offline station flashed the board with it since
    db.finish(later, {"port": "COM6", "mac": "24:6f:28:00:00:99", "certificate_id": cert, "result": "PASS"})

    (rec,) = station_for(db).recover()
    assert rec["run_id"] == crashed and "later PASS" in rec["action"]
    assert _status(cloud, cert) == "ACTIVE" and db.unfinished_runs() == []
