"""A factory line: several station processes (the real `fleetdesk flash` CLI, each with its
own data dir as on its own PC) on one PostgreSQL ledger, flashing virtual boards at once with
identities from the line's certificate pool; a station killed mid-run is recovered by another.

3 stations x 8 boards (the issue's 24 boards at once): 20-29 s here at load 7-10 on the 2 shared
cores (3 runs, all PASS); bench/line.py measures boards/hour for 1, 2 and 3 stations.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from fleetdesk.boards.identity import CloudTarget
from fleetdesk.store.production import ProductionDB
from fleetdesk.store.secretbox import SecretBox

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]
PER_STATION = 8
BOARDS = 3 * PER_STATION


def _mac() -> str:  # boards new to the session's sandbox
    return "24:6f:28:" + os.urandom(3).hex(":")


def _station_env(base, n: int, ledger: str, key=None) -> dict:
    data = base / f"station-{n}"
    data.mkdir(parents=True, exist_ok=True)
    if key is not None:  # the line key, copied to each station as an admin does (seals the pool's keys)
        shutil.copy(key, data / "station.key")
        os.chmod(data / "station.key", 0o600)
    return {**os.environ, "FLEETDESK_DATA_DIR": str(data), "FLEETDESK_LEDGER": ledger}


def _flash(urls, bundle_dir, sandbox, station: str, *extra) -> list[str]:
    return [sys.executable, "-m", "fleetdesk", "flash", *urls, "--bundle", str(bundle_dir), "--identity",
            "--state-dir", sandbox.state_dir, "--baud", "115200", "--station", station, "--json", *extra]


def test_three_stations_share_one_ledger_and_pool(rig, bundle_dir, sandbox, pg_server, tmp_path):
    ledger = pg_server.create_db("line")
    key = tmp_path / "line.key"
    SecretBox(key).ensure_key()
    envs = [_station_env(tmp_path, n, ledger, key) for n in range(3)]
    refill = subprocess.run([sys.executable, "-m", "fleetdesk", "boards", "pool", "refill", str(BOARDS), "--state-dir",
                             sandbox.state_dir, "--json"], env=envs[0], capture_output=True, text=True, timeout=120)
    assert refill.returncode == 0 and json.loads(refill.stdout)["free"] == BOARDS, refill.stderr
    boards = [rig.add(1, mac=_mac())[0] for _ in range(BOARDS)]
    procs = [subprocess.Popen(_flash([b.url for b in boards[n * PER_STATION:(n + 1) * PER_STATION]], bundle_dir, sandbox, f"st-{n}",
                                     "--offline-pool"),
                              env=envs[n], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for n in range(3)]
    results, errors = [], []
    for p in procs:
        out, err = p.communicate(timeout=360)
        results += [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        errors.append(err)
    fails = [(r["port"], r["error"]) for r in results if r["result"] != "PASS"]
    assert len(results) == BOARDS and not fails, (fails, errors)

    things, certs = Counter(r["thing"] for r in results), Counter(r["certificate_id"] for r in results)
    assert len(things) == len(certs) == BOARDS, "a thing or a certificate was given to two boards"
    db = ProductionDB(ledger)
    rows = db.attempts()
    assert sorted(r["mac"] for r in rows) == sorted(b.spec.mac for b in boards)
    assert {r["station"] for r in rows} == {"st-0", "st-1", "st-2"} and all(r["result"] == "PASS" for r in rows)
    pool = db.ledger.all("SELECT certificate_id, mac, state FROM pool")
    assert len(pool) == BOARDS and {p["state"] for p in pool} == {"synced"}
    assert {p["certificate_id"]: p["mac"] for p in pool} == {r["certificate_id"]: r["mac"] for r in rows}
    assert db.unfinished_runs() == [] and db.ledger.all("SELECT * FROM board_locks") == []
    status = subprocess.run([sys.executable, "-m", "fleetdesk", "--ledger", ledger, "line", "status", "--json"],
                            env=envs[0], capture_output=True, text=True, timeout=60)
    line = json.loads(status.stdout)
    assert [(s["station"], s["pass"], s["fail"], s["state"]) for s in line["stations"]] == \
        [(f"st-{n}", PER_STATION, 0, "stopped") for n in range(3)]
    assert line["pool"]["free"] == 0 and all(s["boards_per_hour"] > 0 for s in line["stations"])
    cloud = CloudTarget.from_sandbox(sandbox.state_dir)
    for r in results:  # each board is its own thing in the registry, with its own ACTIVE certificate
        principals = cloud.iot.list_thing_principals(thingName=r["thing"])["principals"]
        assert [p.rsplit("/", 1)[1] for p in principals] == [r["certificate_id"]]
        desc = cloud.iot.describe_certificate(certificateId=r["certificate_id"])["certificateDescription"]
        assert desc["status"] == "ACTIVE"
    db.close()


def test_a_killed_station_is_recovered_by_another(rig, bundle_dir, sandbox, pg_server, tmp_path):
    ledger = pg_server.create_db("line")
    (slow,) = rig.add(1, throttle=True, mac=_mac())
    (other,) = rig.add(1, mac=_mac())
    dead_env, live_env = _station_env(tmp_path, 0, ledger), _station_env(tmp_path, 1, ledger)
    proc = subprocess.Popen(_flash([slow.url], bundle_dir, sandbox, "st-dead"), env=dead_env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    db = ProductionDB(ledger)
    run = None
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and run is None:
            for r in db.unfinished_runs():
                if r["certificate_id"] and r["last_step"] in ("write:begin", "write:done", "verify:begin"):
                    run = r
            if proc.poll() is not None:
                break
            time.sleep(0.05)
        assert run is not None, f"the station never reached the write ({proc.poll()}): {proc.stderr.read()[-2000:]}"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        proc.stderr.close()
    cloud = CloudTarget.from_sandbox(sandbox.state_dir)

    def status(cert):
        return cloud.iot.describe_certificate(certificateId=cert)["certificateDescription"]["status"]

    assert status(run["certificate_id"]) == "ACTIVE"  # the killed station could not clean up

    res = subprocess.run(_flash([other.url], bundle_dir, sandbox, "st-live"), env=live_env, capture_output=True,
                         text=True, timeout=240)
    assert "recovered an interrupted run" in res.stderr and "orphan certificate deactivated" in res.stderr, res.stderr
    line = json.loads(res.stdout.splitlines()[-1])
    assert res.returncode == 0 and line["result"] == "PASS", line["error"]
    assert status(run["certificate_id"]) == "INACTIVE"
    assert db.unfinished_runs() == []
    assert "orphan certificate deactivated" in db.run(run["run_id"])["recovered"]
    assert db.ledger.all("SELECT mac FROM board_locks") == []  # the dead run's board is free again
    db.close()


def test_a_killed_stations_pool_share_goes_back_to_the_line(rig, bundle_dir, sandbox, pg_server, tmp_path):
    """A station keeping a share of the line's pool (--pool-share) is killed mid-run: once its
    lease lapses the other stations take its reserved, unused certificates back; no certificate
    is handed out twice (not even by the dead station's share file, opened again) and none is lost."""
    from fleetdesk.boards.certpool import CertPool

    ledger = pg_server.create_db("line")
    key = tmp_path / "line.key"
    SecretBox(key).ensure_key()
    lease = "3"
    dead_env, live_env = (_station_env(tmp_path, n, ledger, key) | {"FLEETDESK_POOL_LEASE_S": lease} for n in (0, 1))
    refill = subprocess.run([sys.executable, "-m", "fleetdesk", "boards", "pool", "refill", "8", "--state-dir",
                             sandbox.state_dir, "--json"], env=dead_env, capture_output=True, text=True, timeout=120)
    assert refill.returncode == 0, refill.stderr
    (slow,) = rig.add(1, throttle=True, mac=_mac())
    proc = subprocess.Popen(_flash([slow.url], bundle_dir, sandbox, "st-dead", "--offline-pool", "--pool-share", "5"),
                            env=dead_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    db = ProductionDB(ledger)

    def pool_states() -> Counter:
        return Counter(r["state"] for r in db.ledger.all("SELECT state FROM pool"))

    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (pool_states()["reserved"] == 5 and any(
                r["last_step"] in ("write:begin", "write:done", "verify:begin") for r in db.unfinished_runs())):
            assert proc.poll() is None, f"the station ended before the kill: {proc.stderr.read()[-2000:]}"
            time.sleep(0.05)
        assert pool_states() == {"reserved": 5, "assigned": 1, "free": 2}, pool_states()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        proc.stderr.close()
    dead_share = {r["certificate_id"] for r in db.ledger.all("SELECT certificate_id FROM pool WHERE state='reserved'")}
    deadline = time.monotonic() + 30  # the lease lapses on the line's clock
    while db.ledger.scalar(f"SELECT MIN({db.ledger.now_sql} - heartbeat_at) AS age FROM pool_shares") < float(lease):
        assert time.monotonic() < deadline, "the dead station's share never lapsed"
        time.sleep(0.1)

    boards = [rig.add(1, mac=_mac())[0] for _ in range(4)]  # more than the line's 2 free certificates
    res = subprocess.run(_flash([b.url for b in boards], bundle_dir, sandbox, "st-live", "--offline-pool"),
                         env=live_env, capture_output=True, text=True, timeout=300)
    results = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    assert len(results) == 4 and all(r["result"] == "PASS" for r in results), (
        [(r["port"], r["error"]) for r in results], res.stderr[-2000:])
    used = {r["certificate_id"] for r in results}
    assert len(used) == 4 and used & dead_share, "the dead station's share was not taken back"

    # the dead station's share file, opened again (its PC restarted): none of its old rows is handed out twice
    again = CertPool(tmp_path / "station-0", ledger=ledger)
    try:
        seconds = [again.take(_mac(), f"fd-again-{n}").certificate_id for n in range(3)]
    finally:
        again.close()
    assert len(set(seconds)) == 3 and not set(seconds) & used
    rows = db.ledger.all("SELECT certificate_id, state, mac FROM pool")
    assert len(rows) == 8  # nothing lost: the killed board's, 4 synced, 3 just taken
    states = Counter(r["state"] for r in rows)
    assert states["synced"] == 4 and states["assigned"] == 3 and states["reserved"] == 0, states
    assert sum(1 for r in rows if r["mac"]) == 8
    db.close()
