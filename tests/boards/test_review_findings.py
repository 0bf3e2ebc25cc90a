"""Review findings on the flash station (issue 10), each a real bug shown on virtual boards
and the session's sandbox. Every test asserts the behaviour the operator is promised and is
marked ``xfail(strict=True)`` while the bug is open: fixing the bug turns it into an XPASS,
which fails the suite until the marker is removed.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from netutil import refused_port

from fleetdesk.boards.identity import CloudTarget
from fleetdesk.boards.station import Station, StationSettings
from fleetdesk.boards.vfs import read_files, unpack_files
from fleetdesk.store.production import ProductionDB

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def _mac() -> str:  # a board new to the session's sandbox
    return "24:6f:28:" + os.urandom(3).hex(":")


def _status(cloud, cert_id: str) -> str:
    return cloud.iot.describe_certificate(certificateId=cert_id)["certificateDescription"]["status"]


def _board_cert(board, vfs) -> str | None:
    data = board.flash.read(vfs.offset, vfs.size)
    files = {} if data.count(0xFF) == len(data) else read_files(data)
    cert = files.get("/certs/cert.der")
    return hashlib.sha256(cert).hexdigest() if cert else None


def _backed_up_cert(db, mac) -> str | None:
    """The certificate id held by the newest identity backup of ``mac`` (None: no backup)."""
    backup = db.latest_backup(mac, "identity")
    if backup is None:
        return None
    files = unpack_files(backup[1]) or {}
    return hashlib.sha256(files["/certs/cert.der"]).hexdigest() if "/certs/cert.der" in files else None


def _station(bundle_dir, cloud, db, **kw) -> Station:
    kw.setdefault("wait_online", False)
    kw.setdefault("boot_wait", 0.3)
    return Station(StationSettings(bundle=str(bundle_dir), identity=True, station="review", **kw), cloud=cloud, db=db)


@pytest.fixture
def cloud(sandbox):
    return CloudTarget.from_sandbox(sandbox.state_dir)


def test_claim_mode_reflash_of_a_known_board_backs_up_and_passes(rig, bundle_dir, tmp_path, cloud):
    import uuid

    (board,) = rig.add(1, mac=_mac())
    db = ProductionDB(tmp_path / "prod.sqlite3")
    first = _station(bundle_dir, cloud, db).run_one(board.url)
    assert first.result == "PASS", first.error

    claim = _station(bundle_dir, cloud, db, claim=True, claim_template="fd-review-" + uuid.uuid4().hex[:8])
    res = claim.run_one(board.url)
    assert "_backup_before_write" not in res.error, res.error
    assert res.result == "PASS", res.error
    assert _backed_up_cert(db, board.spec.mac) == first.certificate_id, "the replaced identity was not backed up"


def test_pool_never_replaces_a_board_identity_without_a_backup(rig, bundle_dir, tmp_path, cloud):
    from fleetdesk.boards.certpool import CertPool

    (board,) = rig.add(1, mac=_mac())
    other = _station(bundle_dir, cloud, ProductionDB(tmp_path / "other-station.sqlite3"))
    first = other.run_one(board.url)  # a board provisioned by another station (this DB never saw it)
    assert first.result == "PASS", first.error
    vfs = other.plan.partition("vfs")
    assert _board_cert(board, vfs) == first.certificate_id

    assert CertPool().refill(cloud, 1) == 1
    db = ProductionDB(tmp_path / "prod.sqlite3")
    res = _station(bundle_dir, cloud, db, offline_pool=True).run_one(board.url)
    assert res.result == "PASS", res.error
    # offline, the station cannot ask the cloud whether the board's identity is still good: the board
    # gets the pool's certificate, and the identity it carried (an ACTIVE certificate) is backed up first
    assert res.certificate_id != first.certificate_id
    assert _board_cert(board, vfs) == res.certificate_id, "the board does not carry the pool certificate"
    assert _backed_up_cert(db, board.spec.mac) == first.certificate_id, "the replaced identity was not backed up"


def test_restore_never_overwrites_another_identity_without_a_backup(rig, bundle_dir, tmp_path, cloud):
    (board,) = rig.add(1, mac=_mac())
    here_db = ProductionDB(tmp_path / "prod.sqlite3")
    first = _station(bundle_dir, cloud, here_db).run_one(board.url)  # identity A, on file here
    assert first.result == "PASS", first.error
    # another station gives the board identity B (its DB does not know A, so A stays ACTIVE)
    other = _station(bundle_dir, cloud, ProductionDB(tmp_path / "other.sqlite3"), factory_reset=True)
    second = other.run_one(board.url)
    assert second.result == "PASS" and second.certificate_id != first.certificate_id, second.error
    vfs = other.plan.partition("vfs")
    assert _board_cert(board, vfs) == second.certificate_id and _status(cloud, second.certificate_id) == "ACTIVE"

    res = _station(bundle_dir, cloud, here_db, restore_identity=True).run_one(board.url)
    # the operator asked for a restore: the board gets A back, and B (ACTIVE) is backed up first
    assert res.result == "PASS", res.error
    assert _board_cert(board, vfs) == first.certificate_id, "A was not restored"
    assert _backed_up_cert(here_db, board.spec.mac) == second.certificate_id, "B was overwritten without a backup"


def test_stop_during_a_slow_mint_leaves_no_active_certificate(rig, bundle_dir, tmp_path, cloud):
    (board,) = rig.add(1, mac=_mac())
    db = ProductionDB(tmp_path / "prod.sqlite3")
    station = _station(bundle_dir, cloud, db)
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
        while _status(cloud, made[0]) != "INACTIVE":
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
    mac = _mac()
    cert = cloud.iot.create_keys_and_certificate(setAsActive=True)
    cid = cert["certificateId"]
    run_id = _crashed_run(tmp_path / "prod.sqlite3", [
        ["detect", "done", {"mac": mac}],
        ["identity", "minted", {"thing": "fd-" + mac.replace(":", ""), "certificate_id": cid}],
        ["write", "begin", {}]])
    cloud.deactivate(cid)
    cloud.iot.delete_certificate(certificateId=cid, forceDelete=True)  # dropped as unused, then the crash

    db = ProductionDB(tmp_path / "prod.sqlite3")
    station = _station(bundle_dir, cloud, db)
    try:
        out = station.recover()
    finally:
        station.close()
    assert db.unfinished_runs() == [], [r.get("action") for r in out]
    assert "already deleted" in db.run(run_id)["recovered"], db.run(run_id)["recovered"]
    assert "failed" not in db.run(run_id)["recovered"]


def test_a_second_station_does_not_deactivate_a_live_run(rig, bundle_dir, tmp_path, cloud):
    (board,) = rig.add(1, mac=_mac(), throttle=True)
    path = tmp_path / "prod.sqlite3"
    first = _station(bundle_dir, cloud, ProductionDB(path), baud=115200)
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
        second = _station(bundle_dir, cloud, ProductionDB(path))
        try:
            second.recover()
        finally:
            second.close()
            watch.close()
        assert _status(cloud, live["certificate_id"]) == "ACTIVE", "the live run's certificate was deactivated"
    finally:
        first.cancel_all()
        t.join(60)


def test_killed_pool_run_then_restart_flashes_an_active_certificate(rig, bundle_dir, tmp_path, cloud, sandbox):
    from fleetdesk.boards.certpool import CertPool

    assert CertPool().refill(cloud, 2) >= 1
    (board,) = rig.add(1, mac=_mac(), throttle=True)
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
    assert _status(cloud, line["certificate_id"]) == "ACTIVE", \
        f"PASS with an INACTIVE certificate (recovered run's {run['certificate_id'][:12]} reused)"


def test_a_pipeline_refusal_shows_its_own_advice(rig, bundle_dir, tmp_path, cloud):
    (board,) = rig.add(1, mac=_mac())
    station = _station(bundle_dir, cloud, ProductionDB(tmp_path / "prod.sqlite3"), restore_identity=True)
    r = station.run_one(board.url)
    assert r.result == "FAIL" and "no identity on file" in r.error
    assert "re-plug" not in r.advice and "without --restore-identity" in r.advice, r.advice


def test_fallback_result_remembers_that_the_first_attempt_wrote(bundle_dir):
    from fleetdesk.boards.flasher import FlashJob, WorkerResult
    from fleetdesk.boards.images import load_plan

    attempts = iter([WorkerResult(False, "serial", "Connection reset mid-write", written=True),
                     WorkerResult(False, "esptool", "Failed to connect", written=False)])

    class Job(FlashJob):  # the two worker outcomes, without a board
        def _once(self, job):
            return next(attempts)

    result = Job(f"socket://127.0.0.1:{refused_port()}", load_plan(str(bundle_dir)), baud=460800).run()
    assert result.baud_fallback and not result.ok
    assert result.written, "bytes were written at 460800 but the job reports nothing written"


def test_a_refused_other_product_board_leaves_its_thing_untouched(rig, bundle_dir, tmp_path, cloud):
    (board,) = rig.add(1, mac=_mac())
    other = _station(bundle_dir, cloud, ProductionDB(tmp_path / "other-line.sqlite3"), product="alpha")
    first = other.run_one(board.url)
    assert first.result == "PASS", first.error
    attrs = cloud.iot.describe_thing(thingName=first.thing)["attributes"]
    assert attrs.get("product") == "alpha"

    res = _station(bundle_dir, cloud, ProductionDB(tmp_path / "prod.sqlite3"), product="beta").run_one(board.url)
    assert res.result == "FAIL" and res.advice_code == "other-product", res.error
    after = cloud.iot.describe_thing(thingName=first.thing)["attributes"]
    assert after == attrs, f"the refused board's thing was changed in the registry: {attrs} -> {after}"


def test_a_firmware_only_reflash_keeps_the_board_identity(rig, bundle_dir, tmp_path, cloud):
    (board,) = rig.add(1, mac=_mac())
    db = ProductionDB(tmp_path / "prod.sqlite3")
    first = _station(bundle_dir, cloud, db).run_one(board.url)
    assert first.result == "PASS", first.error
    vfs = Station(StationSettings(bundle=str(bundle_dir), identity=False)).plan.partition("vfs")
    assert _board_cert(board, vfs) == first.certificate_id

    plain = Station(StationSettings(bundle=str(bundle_dir), identity=False, boot_wait=0.3), db=db)
    res = plain.run_one(board.url)
    assert res.result == "PASS", res.error
    assert _board_cert(board, vfs) == first.certificate_id or \
        _backed_up_cert(db, board.spec.mac) == first.certificate_id, \
        "a firmware-only re-flash erased the board's identity (and kept no backup)"
