"""Issue 10 §3 on virtual boards: every identity run reads what the board carries (a few KB of
its vfs, same connection) before deciding what to write.

- identity on file but missing on the board: the station stops before writing and offers a
  restore; the restore then brings the same certificate back;
- a board flashed by another station (this DB and key store know nothing) keeps its identity;
- a board carrying a certificate this cloud does not know gets a new identity, and the old one
  is backed up first.
"""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest
from netutil import refused_port

from fleetdesk.boards.identity import CloudTarget
from fleetdesk.boards.station import Station, StationSettings
from fleetdesk.boards.vfs import read_files
from fleetdesk.paths import data_dir
from fleetdesk.store.production import ProductionDB

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def _status(cloud, cert_id) -> str:
    return cloud.iot.describe_certificate(certificateId=cert_id)["certificateDescription"]["status"]


def _certs(cloud) -> set[str]:
    return {c["certificateId"] for c in cloud.iot.list_certificates(pageSize=250)["certificates"]}


def _steps(station, result) -> list[tuple[str, str]]:
    return [(j["step"], j["status"]) for j in station.db.journal(result.run_id)]


@pytest.fixture
def cloud(sandbox):
    return CloudTarget.from_sandbox(sandbox.state_dir)


def _lose_filesystem(rig, board, vfs) -> None:
    """Power the board off, erase its vfs partition, power it on (MicroPython formats an empty
    filesystem at boot, as on a real board whose flash was erased)."""
    rig.call(board.unplug())
    board.flash.erase(vfs.offset, vfs.size)
    rig.call(board.replug())


def _files(board, vfs) -> dict:
    data = board.flash.read(vfs.offset, vfs.size)
    return {} if data.count(0xFF) == len(data) else read_files(data)


def _station(tmp_path, bundle_dir, cloud, db="prod.sqlite3", **kw) -> Station:
    settings = StationSettings(bundle=str(bundle_dir), identity=True, online_timeout=90, station="line-1", **kw)
    return Station(settings, cloud=cloud, db=ProductionDB(tmp_path / db))


def test_identity_missing_on_the_board_is_offered_a_restore(rig, bundle_dir, tmp_path, cloud):
    (board,) = rig.add(1)
    station = _station(tmp_path, bundle_dir, cloud)
    vfs = station.plan.partition("vfs")
    first = station.run_one(board.url)
    assert first.result == "PASS", first.error
    assert first.board_identity["found"] is False and first.board_identity["reason"] == "erased"

    _lose_filesystem(rig, board, vfs)
    before = board.flash.read(0, vfs.offset)  # bootloader, partition table, app
    minted_before = _certs(cloud)
    offered = station.run_one(board.url)
    assert offered.result == "FAIL" and offered.restore_offered and offered.identity_on_file
    assert offered.advice_code == "identity-missing" and "Restore identity" in offered.advice
    assert first.thing in offered.error and "nothing was written" not in offered.error.split("\n")[0]
    assert ("write", "begin") not in _steps(station, offered)
    assert board.flash.read(0, vfs.offset) == before, "a byte was written before the operator decided"
    assert "/certs/cert.der" not in _files(board, vfs)
    assert _certs(cloud) == minted_before, "a certificate was minted although a restore was offered"

    station.settings.restore_identity = True
    restored = station.run_one(board.url)
    assert restored.result == "PASS" and restored.restored, restored.error
    assert (restored.thing, restored.certificate_id) == (first.thing, first.certificate_id)
    assert _status(cloud, first.certificate_id) == "ACTIVE" and cloud.connectivity(first.thing)["connected"]

    # the other choice: a new identity for the erased board (factory reset), no offer
    _lose_filesystem(rig, board, vfs)
    station.settings.restore_identity, station.settings.factory_reset = False, True
    fresh = station.run_one(board.url)
    assert fresh.result == "PASS" and not fresh.restore_offered, fresh.error
    assert fresh.thing == first.thing and fresh.certificate_id != first.certificate_id


def test_board_flashed_elsewhere_keeps_its_identity(rig, bundle_dir, tmp_path, cloud):
    (board,) = rig.add(1)
    other = _station(tmp_path, bundle_dir, cloud, db="other-station.sqlite3")
    first = other.run_one(board.url)
    assert first.result == "PASS", first.error
    shutil.rmtree(data_dir() / "devices" / first.thing)  # this station has no key on file either

    here = _station(tmp_path, bundle_dir, cloud)
    vfs = here.plan.partition("vfs")
    assert here.db.device(board.spec.mac) is None
    minted_before = _certs(cloud)
    again = here.run_one(board.url)
    assert again.result == "PASS", (again.error, again.console_tail[-5:])
    assert (again.thing, again.certificate_id) == (first.thing, first.certificate_id)
    assert _certs(cloud) == minted_before and _status(cloud, first.certificate_id) == "ACTIVE"
    probe = again.board_identity
    assert probe["found"] and probe["certificate_id"] == first.certificate_id
    assert probe["bytes_read"] <= 32 * 1024, probe  # a few KB, not the 2 MB partition
    assert cloud.connectivity(first.thing)["connected"]
    assert here.db.device(board.spec.mac).certificate_id == first.certificate_id  # now on file here too
    kept = list((data_dir() / "devices" / first.thing).glob("*.private.pem.key"))  # and its key, for a restore
    assert len(kept) == 1 and oct(kept[0].stat().st_mode & 0o777) == "0o600"
    pop = json.loads(_files(board, vfs)["/config.json"])["pop"]
    assert (data_dir() / "devices" / first.thing / "pop.txt").read_text() == pop  # BLE setup still opens
    # its thing is in the registry, so nothing was minted ahead (the board might carry it, as here)
    assert ("identity", "minted") not in _steps(here, again)
    journal = " ".join(j["detail"] or "" for j in here.db.journal(again.run_id))
    assert "PRIVATE" not in journal and "key.der\": \"" not in journal


def test_unknown_certificate_on_the_board_is_backed_up_then_replaced(rig, bundle_dir, tmp_path, cloud):
    (board,) = rig.add(1)
    station = _station(tmp_path, bundle_dir, cloud)
    vfs = station.plan.partition("vfs")
    first = station.run_one(board.url)
    assert first.result == "PASS", first.error
    # that certificate is gone from this cloud (another fleet's board, or deleted by an admin)
    for p in cloud.iot.list_thing_principals(thingName=first.thing)["principals"]:
        cloud.iot.detach_thing_principal(thingName=first.thing, principal=p)
    cloud.iot.update_certificate(certificateId=first.certificate_id, newStatus="INACTIVE")
    cloud.iot.delete_certificate(certificateId=first.certificate_id, forceDelete=True)
    station.db.close()
    station = _station(tmp_path, bundle_dir, cloud, db="fresh.sqlite3")  # and no DB row for it

    again = station.run_one(board.url)
    assert again.result == "PASS", (again.error, again.console_tail[-5:])
    assert again.certificate_id != first.certificate_id and _status(cloud, again.certificate_id) == "ACTIVE"
    assert again.backup_id, "the replaced identity was not backed up"
    assert ("backup", "done") in _steps(station, again)
    on_board = read_files(board.flash.read(vfs.offset, vfs.size))
    assert hashlib.sha256(on_board["/certs/cert.der"]).hexdigest() == again.certificate_id


def test_identity_is_never_replaced_without_a_kept_backup(rig, bundle_dir, tmp_path, cloud):
    (board,) = rig.add(1)
    station = _station(tmp_path, bundle_dir, cloud)
    vfs = station.plan.partition("vfs")
    assert station.run_one(board.url).result == "PASS"
    station.settings.factory_reset = True
    reset = station.run_one(board.url)
    assert reset.result == "PASS" and reset.backup_id, reset.error  # an encrypted backup row now exists
    (data_dir() / "station.key").unlink()  # the station's data key is lost (disk swap, bad copy)

    before, minted_before = _files(board, vfs)["/certs/cert.der"], _certs(cloud)
    refused = station.run_one(board.url)
    assert refused.result == "FAIL" and "station.key" in refused.error, refused.error
    assert ("write", "begin") not in _steps(station, refused)
    assert _files(board, vfs)["/certs/cert.der"] == before, "the identity was replaced without a backup"
    assert _status(cloud, reset.certificate_id) == "ACTIVE" and _certs(cloud) == minted_before


def test_cli_says_hold_and_how_to_restore(rig, bundle_dir, tmp_path, cloud, sandbox):
    import subprocess
    import sys

    def flash(*extra):
        return subprocess.run([sys.executable, "-m", "fleetdesk", "flash", board.url, "--bundle", str(bundle_dir),
                               "--identity", "--state-dir", sandbox.state_dir, *extra],
                              capture_output=True, text=True, timeout=240, stdin=subprocess.DEVNULL)

    (board,) = rig.add(1)
    first = flash()
    assert first.returncode == 0 and first.stdout.startswith("PASS"), (first.stdout, first.stderr)
    vfs = Station(StationSettings(bundle=str(bundle_dir), identity=False)).plan.partition("vfs")
    _lose_filesystem(rig, board, vfs)
    held = flash()
    assert held.returncode == 1 and held.stdout.startswith("HOLD"), (held.stdout, held.stderr)
    assert "is on file but missing on this board" in held.stdout and "--restore-identity" in held.stdout
    restored = flash("--restore-identity")
    assert restored.returncode == 0 and "(identity restored)" in restored.stdout, (restored.stdout, restored.stderr)
    thing = first.stdout.split()[4]
    assert thing in restored.stdout and cloud.connectivity(thing)["connected"]


def test_contradicting_identity_flags_are_refused_before_any_board(bundle_dir, tmp_path):
    import subprocess
    import sys

    for flags in (["--restore-identity", "--factory-reset"], ["--claim", "--offline-pool"]):
        r = subprocess.run([sys.executable, "-m", "fleetdesk", "flash", f"socket://127.0.0.1:{refused_port()}", "--bundle",
                            str(bundle_dir), "--identity", *flags], capture_output=True, text=True, timeout=60)
        assert r.returncode == 2 and "contradict each other" in r.stderr and "Traceback" not in r.stderr, r.stderr
        assert r.stdout == ""


def test_a_certificate_deactivated_in_the_cloud_is_a_question(rig, bundle_dir, tmp_path, cloud):
    """Someone revoked this board's certificate: the station does not quietly give it a new one."""
    (board,) = rig.add(1)
    station = _station(tmp_path, bundle_dir, cloud)
    vfs = station.plan.partition("vfs")
    first = station.run_one(board.url)
    assert first.result == "PASS", first.error
    cloud.iot.update_certificate(certificateId=first.certificate_id, newStatus="REVOKED")
    before, minted_before = board.flash.read(0, vfs.offset), _certs(cloud)
    held = station.run_one(board.url)
    assert held.result == "FAIL" and held.restore_offered and held.advice_code == "identity-deactivated", held.error
    assert "REVOKED" in held.error and board.flash.read(0, vfs.offset) == before and _certs(cloud) == minted_before
    station.settings.factory_reset = True  # the operator says: back in service
    again = station.run_one(board.url)
    assert again.result == "PASS" and again.certificate_id != first.certificate_id, again.error
    assert _status(cloud, first.certificate_id) == "REVOKED"  # never re-activated


def test_firmware_only_flash_keeps_identity_and_respects_the_product(rig, bundle_dir, tmp_path, cloud):
    (board,) = rig.add(1)
    station = _station(tmp_path, bundle_dir, cloud, product="sensor-a")
    vfs = station.plan.partition("vfs")
    first = station.run_one(board.url)
    assert first.result == "PASS", first.error
    plain = Station(StationSettings(bundle=str(bundle_dir), identity=False, boot_wait=0.3, product="relay-b"),
                    db=station.db)
    refused = plain.run_one(board.url)
    assert refused.result == "FAIL" and refused.advice_code == "other-product", refused.error
    plain.settings.product = None
    minted_before = _certs(cloud)
    again = plain.run_one(board.url)
    assert again.result == "PASS" and again.certificate_id == first.certificate_id, again.error
    files = _files(board, vfs)
    assert hashlib.sha256(files["/certs/cert.der"]).hexdigest() == first.certificate_id
    assert json.loads(files["/config.json"])["product"] == "sensor-a" and _certs(cloud) == minted_before
