"""A station that is stopped, killed or runs beside another leaves no certificate active that no board
holds, and never deactivates one a live run is using: a stop during a slow mint, a crash after a mint
ahead, a second station, a killed pool run then a restart. Virtual boards against the session's sandbox.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from fleetdesk.store.production import ProductionDB

from .station_checks import cert_status, cloud, new_mac, review_station  # noqa: F401  (cloud: the fixture)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def test_stop_during_a_slow_mint_leaves_no_active_certificate(rig, bundle_dir, tmp_path, cloud):
    (board,) = rig.add(1, mac=new_mac())
    db = ProductionDB(tmp_path / "prod.sqlite3")
    station = review_station(bundle_dir, cloud, db)
    assert station.run_one(board.url).result == "PASS"  # now on file: no mint ahead for this board
    station.settings.factory_reset = True
    minting, made, done = threading.Event(), [], threading.Event()

    def slow(**_kw):  # a slow control plane (AWS across a poor link): the STOP lands inside the call
        minting.set()
        time.sleep(2.0)  # emulates a slow link (not a wait for a condition)

    def after(parsed=None, **_kw):
        made.append(parsed["certificateId"])
        done.set()

    cloud.iot.meta.events.register("before-call.iot.CreateKeysAndCertificate", slow)
    cloud.iot.meta.events.register("after-call.iot.CreateKeysAndCertificate", after)
    try:
        threading.Thread(target=lambda: (minting.wait(120), station.cancel_all()), daemon=True).start()
        res = station.run_one(board.url)
        assert res.result == "FAIL" and "cancelled" in res.error, res.error
        assert done.wait(30), "the mint never happened"
        deadline = time.monotonic() + 30  # the identity thread finishes (policy, thing, key files), then retires it
        while cert_status(cloud, made[0]) != "INACTIVE":
            assert time.monotonic() < deadline, "a certificate minted for a stopped board is left ACTIVE"
            time.sleep(0.1)
    finally:
        cloud.iot.meta.events.unregister("before-call.iot.CreateKeysAndCertificate", slow)
        cloud.iot.meta.events.unregister("after-call.iot.CreateKeysAndCertificate", after)
        station.cancel_all()
        station.close()


def _crashed_run(db_path, steps) -> str:
    """A run opened and journaled by another process that then died (as a killed station
    leaves it); returns its run id. ``steps``: (step, status, run fields) in order."""
    code = ("import json, sys\nfrom fleetdesk.store.production import ProductionDB\n"
            "db = ProductionDB(sys.argv[1])\nrun = db.start_run(station='review', port='socket://127.0.0.1:9')\n"
            "for step, status, fields in json.loads(sys.argv[2]):\n    db.step(run, step, status, **fields)\n"
            "print(run)\n")
    out = subprocess.run([sys.executable, "-c", code, str(db_path), json.dumps(steps)], capture_output=True,
                         text=True, timeout=60, check=True)
    return out.stdout.strip()


def test_crash_after_an_unused_mint_ahead_is_recovered(tmp_path, cloud, bundle_dir):
    """A certificate minted ahead is on the run, then deleted (the board kept its own identity);
    the app dies before the run is closed. recover() finds the certificate gone: that is done,
    not a failure, and the run is closed (it used to stay open, failing at every start)."""
    mac = new_mac()
    cert = cloud.iot.create_keys_and_certificate(setAsActive=True)
    cid = cert["certificateId"]
    run_id = _crashed_run(tmp_path / "prod.sqlite3", [
        ["detect", "done", {"mac": mac}],
        ["identity", "minted", {"thing": "fd-" + mac.replace(":", ""), "certificate_id": cid}],
        ["write", "begin", {}]])
    cloud.deactivate(cid)
    cloud.iot.delete_certificate(certificateId=cid, forceDelete=True)  # dropped as unused, then the crash

    db = ProductionDB(tmp_path / "prod.sqlite3")
    station = review_station(bundle_dir, cloud, db)
    try:
        out = station.recover()
    finally:
        station.close()
    assert db.unfinished_runs() == [], [r.get("action") for r in out]
    assert "already deleted" in db.run(run_id)["recovered"], db.run(run_id)["recovered"]
    assert "failed" not in db.run(run_id)["recovered"]


def test_a_second_station_does_not_deactivate_a_live_run(rig, bundle_dir, tmp_path, cloud):
    (board,) = rig.add(1, mac=new_mac(), throttle=True)
    path = tmp_path / "prod.sqlite3"
    first = review_station(bundle_dir, cloud, ProductionDB(path), baud=115200)
    out: list = []
    t = threading.Thread(target=lambda: out.append(first.run_one(board.url)), daemon=True)
    t.start()
    try:
        watch = ProductionDB(path)
        deadline, live = time.monotonic() + 90, None
        while live is None and time.monotonic() < deadline:
            live = next((r for r in watch.unfinished_runs() if r["certificate_id"]), None)
            time.sleep(0.02)
        assert live is not None, "the run never minted"
        # a second station on the same production DB starts (GUI + CLI, or a second terminal)
        second = review_station(bundle_dir, cloud, ProductionDB(path))
        try:
            second.recover()
        finally:
            second.close()
            watch.close()
        assert cert_status(cloud, live["certificate_id"]) == "ACTIVE", "the live run's certificate was deactivated"
    finally:
        first.cancel_all()
        t.join(60)


def test_killed_pool_run_then_restart_flashes_an_active_certificate(rig, bundle_dir, tmp_path, cloud, sandbox):
    from fleetdesk.boards.certpool import CertPool

    assert CertPool().refill(cloud, 2) >= 1
    (board,) = rig.add(1, mac=new_mac(), throttle=True)
    cmd = [sys.executable, "-m", "fleetdesk", "flash", board.url, "--bundle", str(bundle_dir), "--identity",
           "--offline-pool", "--state-dir", sandbox.state_dir, "--baud", "115200", "--no-wait-online", "--json"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    db = ProductionDB()
    run = None
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and run is None:
            run = next((r for r in db.unfinished_runs() if r["certificate_id"]
                        and r["last_step"] in ("write:begin", "write:done", "verify:begin")), None)
            time.sleep(0.05)
        assert run is not None, proc.communicate(timeout=60)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        proc.stdout.close()
        proc.stderr.close()
    rig.wait_released(board)  # the orphaned worker notices its host is gone and releases the port

    res = subprocess.run(cmd, capture_output=True, text=True, timeout=200)
    line = json.loads(res.stdout.splitlines()[-1])
    assert line["result"] == "PASS", (line["error"], res.stderr)
    assert cert_status(cloud, line["certificate_id"]) == "ACTIVE", \
        f"PASS with an INACTIVE certificate (recovered run's {run['certificate_id'][:12]} reused)"
