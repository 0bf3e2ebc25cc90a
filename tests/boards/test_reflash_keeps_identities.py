"""Reflashing a board never loses an identity: claim, pool and restore modes back up the identity a board
holds before replacing it (or refuse), a firmware-only reflash keeps it, and a refused board of another
product leaves its thing untouched. Virtual boards against the session's sandbox.
"""

from __future__ import annotations

import pytest

from fleetdesk.boards.station import Station, StationSettings
from fleetdesk.store.production import ProductionDB

from .station_checks import backed_up_cert, board_cert, cert_status, cloud, new_mac, review_station  # noqa: F401  (cloud: the fixture)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def test_claim_mode_reflash_of_a_known_board_backs_up_and_passes(rig, bundle_dir, tmp_path, cloud):
    import uuid

    (board,) = rig.add(1, mac=new_mac())
    db = ProductionDB(tmp_path / "prod.sqlite3")
    first = review_station(bundle_dir, cloud, db).run_one(board.url)
    assert first.result == "PASS", first.error

    claim = review_station(bundle_dir, cloud, db, claim=True, claim_template="fd-review-" + uuid.uuid4().hex[:8])
    res = claim.run_one(board.url)
    assert "_backup_before_write" not in res.error, res.error
    assert res.result == "PASS", res.error
    assert backed_up_cert(db, board.spec.mac) == first.certificate_id, "the replaced identity was not backed up"


def test_pool_never_replaces_a_board_identity_without_a_backup(rig, bundle_dir, tmp_path, cloud):
    from fleetdesk.boards.certpool import CertPool

    (board,) = rig.add(1, mac=new_mac())
    other = review_station(bundle_dir, cloud, ProductionDB(tmp_path / "other-station.sqlite3"))
    first = other.run_one(board.url)  # a board provisioned by another station (this DB never saw it)
    assert first.result == "PASS", first.error
    vfs = other.plan.partition("vfs")
    assert board_cert(board, vfs) == first.certificate_id

    assert CertPool().refill(cloud, 1) == 1
    db = ProductionDB(tmp_path / "prod.sqlite3")
    res = review_station(bundle_dir, cloud, db, offline_pool=True).run_one(board.url)
    assert res.result == "PASS", res.error
    # offline, the station cannot ask the cloud whether the board's identity is still good: the board
    # gets the pool's certificate, and the identity it carried (an ACTIVE certificate) is backed up first
    assert res.certificate_id != first.certificate_id
    assert board_cert(board, vfs) == res.certificate_id, "the board does not carry the pool certificate"
    assert backed_up_cert(db, board.spec.mac) == first.certificate_id, "the replaced identity was not backed up"


def test_restore_never_overwrites_another_identity_without_a_backup(rig, bundle_dir, tmp_path, cloud):
    (board,) = rig.add(1, mac=new_mac())
    here_db = ProductionDB(tmp_path / "prod.sqlite3")
    first = review_station(bundle_dir, cloud, here_db).run_one(board.url)  # identity A, on file here
    assert first.result == "PASS", first.error
    # another station gives the board identity B (its DB does not know A, so A stays ACTIVE)
    other = review_station(bundle_dir, cloud, ProductionDB(tmp_path / "other.sqlite3"), factory_reset=True)
    second = other.run_one(board.url)
    assert second.result == "PASS" and second.certificate_id != first.certificate_id, second.error
    vfs = other.plan.partition("vfs")
    assert board_cert(board, vfs) == second.certificate_id and cert_status(cloud, second.certificate_id) == "ACTIVE"

    res = review_station(bundle_dir, cloud, here_db, restore_identity=True).run_one(board.url)
    # the operator asked for a restore: the board gets A back, and B (ACTIVE) is backed up first
    assert res.result == "PASS", res.error
    assert board_cert(board, vfs) == first.certificate_id, "A was not restored"
    assert backed_up_cert(here_db, board.spec.mac) == second.certificate_id, "B was overwritten without a backup"


def test_a_refused_other_product_board_leaves_its_thing_untouched(rig, bundle_dir, tmp_path, cloud):
    (board,) = rig.add(1, mac=new_mac())
    other = review_station(bundle_dir, cloud, ProductionDB(tmp_path / "other-line.sqlite3"), product="alpha")
    first = other.run_one(board.url)
    assert first.result == "PASS", first.error
    attrs = cloud.iot.describe_thing(thingName=first.thing)["attributes"]
    assert attrs.get("product") == "alpha"

    res = review_station(bundle_dir, cloud, ProductionDB(tmp_path / "prod.sqlite3"), product="beta").run_one(board.url)
    assert res.result == "FAIL" and res.advice_code == "other-product", res.error
    after = cloud.iot.describe_thing(thingName=first.thing)["attributes"]
    assert after == attrs, f"the refused board's thing was changed in the registry: {attrs} -> {after}"


def test_a_firmware_only_reflash_keeps_the_board_identity(rig, bundle_dir, tmp_path, cloud):
    (board,) = rig.add(1, mac=new_mac())
    db = ProductionDB(tmp_path / "prod.sqlite3")
    first = review_station(bundle_dir, cloud, db).run_one(board.url)
    assert first.result == "PASS", first.error
    vfs = Station(StationSettings(bundle=str(bundle_dir), identity=False)).plan.partition("vfs")
    assert board_cert(board, vfs) == first.certificate_id

    plain = Station(StationSettings(bundle=str(bundle_dir), identity=False, boot_wait=0.3), db=db)
    res = plain.run_one(board.url)
    assert res.result == "PASS", res.error
    assert board_cert(board, vfs) == first.certificate_id or \
        backed_up_cert(db, board.spec.mac) == first.certificate_id, \
        "a firmware-only re-flash erased the board's identity (and kept no backup)"
