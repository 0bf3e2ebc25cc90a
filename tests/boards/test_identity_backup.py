"""Issue 10 §3 on a virtual board: a factory reset first reads the board's identity back into
the production DB; an erased board whose identity is on file gets it back (--restore-identity)."""

from __future__ import annotations

import json
import time

import pytest

from fleetdesk.boards.identity import CloudTarget, _pem_to_der
from fleetdesk.boards.station import Station, StationSettings
from fleetdesk.boards.vfs import IDENTITY_PATHS, identity_files, read_files, unpack_files
from fleetdesk.store.production import ProductionDB

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def _cert(cloud, cert_id) -> dict:
    return cloud.iot.describe_certificate(certificateId=cert_id)["certificateDescription"]


def test_factory_reset_backs_up_identity_then_erased_board_is_restored(rig, bundle_dir, tmp_path, sandbox):
    cloud = CloudTarget.from_sandbox(sandbox.state_dir)
    (board,) = rig.add(1)
    settings = StationSettings(bundle=str(bundle_dir), identity=True, online_timeout=90, station="line-1")
    station = Station(settings, cloud=cloud, db=ProductionDB(tmp_path / "prod.sqlite3"))
    vfs = station.plan.partition("vfs")
    first = station.run_one(board.url)
    assert first.result == "PASS", first.error
    assert not first.identity_on_file and first.backup_id is None  # a new board: nothing to back up

    # factory reset: the old identity is read back (before the write) and kept in the DB
    station.settings.factory_reset = True
    reset = station.run_one(board.url)
    assert reset.result == "PASS", reset.error
    assert reset.identity_on_file and reset.backup_id
    assert reset.thing == first.thing and reset.certificate_id != first.certificate_id
    offset, data = station.db.latest_backup(board.spec.mac, "identity")
    assert offset == vfs.offset and len(data) < 16 * 1024  # the identity files, not the whole partition
    files = unpack_files(data)
    assert files is not None and set(files) == set(IDENTITY_PATHS), "the backup does not hold the identity"
    assert json.loads(files["/config.json"])["thing_name"] == first.thing
    assert files["/certs/cert.der"] == _pem_to_der(_cert(cloud, first.certificate_id)["certificatePem"])
    steps = station.db.journal(reset.run_id)
    (done,) = [j for j in steps if j["step"] == "backup" and j["status"] == "done"]
    detail = json.loads(done["detail"])
    assert detail["certificate_id"] == first.certificate_id and detail["identity"] is True
    assert "PRIVATE" not in done["detail"] and "key" not in json.dumps(detail).replace("key_", "")
    begin = next(j for j in steps if j["step"] == "backup" and j["status"] == "begin")
    assert detail["bytes_read"] <= 32 * 1024  # what the probe read from the board, not the partition
    print(f"\nbackup: {detail['bytes_read'] // 1024} KB read from the board, kept in {done['ts'] - begin['ts']:.3f} s")

    # the board loses its flash; the identity on file is written back and the board comes online
    board.flash.erase(vfs.offset, vfs.size)
    assert identity_files(board.flash.read(vfs.offset, vfs.size)) is None
    station.settings.factory_reset, station.settings.restore_identity = False, True
    t0 = time.monotonic()
    restored = station.run_one(board.url)
    assert restored.result == "PASS", (restored.error, restored.console_tail[-5:])
    assert restored.restored and restored.backup_id is None
    # the backup holds the superseded identity (its certificate retired), so the key store restores
    assert {"thing": first.thing, "restored": "key store"} in [
        json.loads(j["detail"]) for j in station.db.journal(restored.run_id) if j["step"] == "identity" and j["detail"]
        and j["status"] == "done"]
    assert (restored.thing, restored.certificate_id) == (reset.thing, reset.certificate_id)
    assert _cert(cloud, reset.certificate_id)["status"] == "ACTIVE"
    assert cloud.connectivity(restored.thing)["connected"]
    on_board = read_files(board.flash.read(vfs.offset, vfs.size))
    assert on_board["/certs/cert.der"] == _pem_to_der(_cert(cloud, reset.certificate_id)["certificatePem"])
    print(f"restore flash: {time.monotonic() - t0:.1f} s")


def test_restore_without_identity_on_file_refuses_before_writing(rig, bundle_dir, tmp_path, sandbox):
    cloud = CloudTarget.from_sandbox(sandbox.state_dir)
    (board,) = rig.add(1)
    settings = StationSettings(bundle=str(bundle_dir), identity=True, restore_identity=True, station="line-1")
    station = Station(settings, cloud=cloud, db=ProductionDB(tmp_path / "prod.sqlite3"))
    before = board.flash.read(0, board.flash.size)
    r = station.run_one(board.url)
    assert r.result == "FAIL" and "no identity on file" in r.error
    assert board.flash.read(0, board.flash.size) == before


def test_interrupted_factory_reset_is_restored_from_its_backup(rig, bundle_dir, tmp_path, sandbox):
    """The factory reset's backup is what brings a board back: the reset is stopped as it starts
    writing (the new certificate rolled back), the board's filesystem is left unusable, and this
    station has lost its key files. Restore takes the identity from the backup read off the board."""
    import shutil
    import threading

    from fleetdesk.paths import data_dir

    cloud = CloudTarget.from_sandbox(sandbox.state_dir)
    (board,) = rig.add(1)
    settings = StationSettings(bundle=str(bundle_dir), identity=True, online_timeout=90, station="line-1")
    station = Station(settings, cloud=cloud, db=ProductionDB(tmp_path / "prod.sqlite3"))
    vfs = station.plan.partition("vfs")
    first = station.run_one(board.url)
    assert first.result == "PASS", first.error

    station.settings.factory_reset = True
    stop = threading.Event()

    def on_event(port, ev):  # STOP as soon as the write starts
        if ev.stage == "write" and not stop.is_set():
            stop.set()
            station.cancel_all()

    reset = station.run_one(board.url, on_event)
    assert reset.result == "FAIL" and "cancelled" in reset.error and reset.backup_id, reset.error
    assert _cert(cloud, first.certificate_id)["status"] == "ACTIVE"  # the old identity was never retired
    rig.call(board.unplug())
    board.flash.erase(vfs.offset, vfs.size)  # the interrupted write left nothing usable
    rig.call(board.replug())
    shutil.rmtree(data_dir() / "devices" / first.thing)  # and the station's key files are gone

    station.settings.factory_reset = False
    offered = station.run_one(board.url)
    assert offered.restore_offered, offered.error  # the backup makes it restorable
    station.settings.restore_identity = True
    restored = station.run_one(board.url)
    assert restored.result == "PASS" and restored.restored, (restored.error, restored.console_tail[-5:])
    assert (restored.thing, restored.certificate_id) == (first.thing, first.certificate_id)
    assert {"thing": first.thing, "restored": "backup"} in [
        json.loads(j["detail"]) for j in station.db.journal(restored.run_id)
        if j["step"] == "identity" and j["status"] == "done" and j["detail"]]
    assert cloud.connectivity(first.thing)["connected"]
