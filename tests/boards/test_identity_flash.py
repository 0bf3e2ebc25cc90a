"""End to end: flash with identity against the sandbox; each board PASSes only once it is
online in the sandbox's presence, with its own thing and certificate."""

from __future__ import annotations

import os
import stat
import threading
import time

import boto3
import pytest
from botocore.config import Config

from fleetdesk.boards.identity import CloudTarget
from fleetdesk.boards.station import Station, StationSettings
from fleetdesk.boards.vfs import read_files
from fleetdesk.paths import data_dir
from fleetdesk.store.production import ProductionDB

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture
def cloud(sandbox):
    return CloudTarget.from_sandbox(sandbox.state_dir)


def _station(tmp_path, bundle_dir, cloud, **kw) -> Station:
    settings = StationSettings(bundle=str(bundle_dir), identity=True, online_timeout=90, operator="op",
                               station="line-1", **kw)
    return Station(settings, cloud=cloud, db=ProductionDB(tmp_path / "prod.sqlite3"))


def _cert_status(cloud, cert_id):
    return cloud.iot.describe_certificate(certificateId=cert_id)["certificateDescription"]["status"]


def test_parallel_identity_flash_each_board_online_with_its_own_cert(rig, bundle_dir, tmp_path, cloud):
    boards = rig.add(3)
    station = _station(tmp_path, bundle_dir, cloud)
    results = station.run_many([b.url for b in boards])
    assert [r.result for r in results] == ["PASS"] * 3, [(r.error, r.console_tail[-5:]) for r in results]
    assert len({r.thing for r in results}) == 3 and len({r.certificate_id for r in results}) == 3
    for b, r in zip(boards, results):
        assert r.thing == "fd-" + b.spec.mac.replace(":", "")
        assert _cert_status(cloud, r.certificate_id) == "ACTIVE"
        principals = cloud.iot.list_thing_principals(thingName=r.thing)["principals"]
        assert any(p.endswith(r.certificate_id) for p in principals)
        assert cloud.connectivity(r.thing)["connected"]
        # the device config and certs went into the board's vfs partition in the same write
        vfs = station.plan.partition("vfs")
        files = read_files(b.flash.read(vfs.offset, vfs.size))
        assert b'"thing_name": "%s"' % r.thing.encode() in files["/config.json"]
        assert {"/certs/ca.der", "/certs/cert.der", "/certs/key.der"} <= set(files)
        key_files = list((data_dir() / "devices" / r.thing).glob("*.private.pem.key"))
        assert key_files and stat.S_IMODE(os.stat(key_files[0]).st_mode) == 0o600
    rows = station.db.attempts()
    assert sorted((x["thing"], x["certificate_id"], x["result"]) for x in rows) == sorted(
        (r.thing, r.certificate_id, "PASS") for r in results)
    station.db.export_csv(tmp_path / "prod.csv")
    assert all(r.certificate_id in (tmp_path / "prod.csv").read_text() for r in results)

    # a re-flash keeps the board's identity (same thing, same certificate) and is flagged
    again = station.run_one(boards[0].url)
    assert again.result == "PASS" and again.reflash, again.error
    assert (again.thing, again.certificate_id) == (results[0].thing, results[0].certificate_id)
    # a factory reset mints a new certificate and retires the old one
    station.settings.factory_reset = True
    reset = station.run_one(boards[1].url)
    assert reset.result == "PASS", reset.error
    assert reset.thing == results[1].thing and reset.certificate_id != results[1].certificate_id
    deadline = time.monotonic() + 10  # the superseded certificate is retired in the background
    while _cert_status(cloud, results[1].certificate_id) != "INACTIVE" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _cert_status(cloud, results[1].certificate_id) == "INACTIVE"
    assert _cert_status(cloud, reset.certificate_id) == "ACTIVE"

    # the board carries product "sensor-a"; a station set for "relay-b" refuses before writing
    station.settings.product, station.settings.factory_reset = "sensor-a", False
    assert station.run_one(boards[2].url).result == "PASS"
    station.settings.product = "relay-b"
    refused = station.run_one(boards[2].url)
    assert refused.result == "FAIL" and "already carries product 'sensor-a'" in refused.error
    assert refused.advice_code == "other-product"
    assert ("write", "begin") not in [(j["step"], j["status"]) for j in station.db.journal(refused.run_id)]
    files = read_files(boards[2].flash.read(vfs.offset, vfs.size))
    assert b'"product": "sensor-a"' in files["/config.json"]  # its identity is untouched
    station.settings.repurpose = True
    assert station.run_one(boards[2].url).result == "PASS"
    assert station.db.device(boards[2].spec.mac).product == "relay-b"


def test_killed_board_fails_without_active_orphan_then_reflashes(rig, bundle_dir, tmp_path, cloud):
    (board,) = rig.add(1, throttle=True)
    station = _station(tmp_path, bundle_dir, cloud, baud=115200)
    out = {}

    def on_event(port, ev):
        if ev.stage == "write" and "fired" not in out:
            out["fired"] = True
            rig.loop.call_soon_threadsafe(lambda: rig.loop.create_task(board.unplug()))

    t = threading.Thread(target=lambda: out.update(r=station.run_one(board.url, on_event)))
    t.start()
    t.join(200)
    first = out["r"]
    assert first.result == "FAIL" and first.certificate_id
    assert _cert_status(cloud, first.certificate_id) == "INACTIVE"  # never left ACTIVE
    rig.call(board.replug())
    second = station.run_one(board.url)
    assert second.result == "PASS", (second.error, second.console_tail[-5:])
    assert second.thing == first.thing and second.certificate_id != first.certificate_id
    assert [r["result"] for r in station.db.attempts()] == ["FAIL", "PASS"]


def test_cloud_unreachable_fails_before_writing(rig, bundle_dir, tmp_path, sandbox):
    (board,) = rig.add(1)
    dead = boto3.client("iot", endpoint_url="https://127.0.0.1:9", region_name="us-east-1",
                        aws_access_key_id="x", aws_secret_access_key="y", verify=False,
                        config=Config(connect_timeout=1, retries={"max_attempts": 1}))
    cloud = CloudTarget(dead, "127.0.0.1", 8883, "us-east-1", open(sandbox.ca_file, "rb").read())
    before = board.flash.read(0, board.flash.size)
    station = _station(tmp_path, bundle_dir, cloud)
    r = station.run_one(board.url)
    assert r.result == "FAIL" and r.advice_code == "cloud-unreachable", r.error
    assert board.flash.read(0, board.flash.size) == before
    (row,) = station.db.attempts()
    assert row["result"] == "FAIL" and row["certificate_id"] is None
