"""Offline station: certificates pre-minted while online (keys encrypted at rest), assigned
while the cloud is unreachable, synced later into the same registry as an online flash."""

from __future__ import annotations

import json
import os
import sqlite3
import time

import boto3
import pytest
from netutil import refused_port
from botocore.config import Config

from fleetdesk.boards.certpool import CertPool, PoolEmpty
from fleetdesk.boards.identity import CloudTarget
from fleetdesk.boards.station import Station, StationSettings
from fleetdesk.paths import data_dir
from fleetdesk.store.production import ProductionDB

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def _shape(cloud, thing):
    """What the registry holds for a thing: attributes, its certs' status and policies."""
    attrs = cloud.iot.describe_thing(thingName=thing)["attributes"]
    out = []
    for arn in cloud.iot.list_thing_principals(thingName=thing)["principals"]:
        cert_id = arn.rsplit("/", 1)[-1]
        status = cloud.iot.describe_certificate(certificateId=cert_id)["certificateDescription"]["status"]
        policies = sorted(p["policyName"] for p in cloud.iot.list_attached_policies(target=arn)["policies"])
        out.append((status, tuple(policies)))
    return sorted(attrs), out


def test_offline_flash_from_pool_then_sync_matches_online(rig, bundle_dir, tmp_path, sandbox):
    def new_mac():  # things new to the session's sandbox
        return "24:6f:28:" + ":".join(f"{b:02x}" for b in os.urandom(3))

    (online_board,) = rig.add(1, mac=new_mac())
    (offline_board,) = rig.add(1, mac=new_mac())
    cloud = CloudTarget.from_sandbox(sandbox.state_dir)
    pool = CertPool()
    assert pool.refill(cloud, 2) == 2 and pool.level() == 2
    raw = sqlite3.connect(data_dir() / "certpool.sqlite3").execute("SELECT key_enc FROM pool").fetchall()
    assert all(b"PRIVATE KEY" not in bytes(r[0]) for r in raw)  # encrypted at rest

    db = ProductionDB(tmp_path / "prod.sqlite3")
    online = Station(StationSettings(bundle=str(bundle_dir), online_timeout=90), cloud=cloud, db=db)
    ref = online.run_one(online_board.url)
    assert ref.result == "PASS", ref.error

    dead = boto3.client("iot", endpoint_url=f"https://127.0.0.1:{refused_port()}", region_name="us-east-1", aws_access_key_id="x",
                        aws_secret_access_key="y", verify=False,
                        config=Config(connect_timeout=1, retries={"max_attempts": 1}))
    offline = Station(StationSettings(bundle=str(bundle_dir), offline_pool=True, boot_wait=0.5),
                      cloud=CloudTarget(dead, "x", 1, "us-east-1", b""), db=db)
    r = offline.run_one(offline_board.url)
    assert r.result == "PASS" and r.pending_sync, r.error  # flashed with no cloud at all
    assert pool.pending() == 1 and pool.level() == 1
    with pytest.raises(cloud.iot.exceptions.ResourceNotFoundException):
        cloud.iot.describe_thing(thingName=r.thing)  # not in the registry yet

    assert pool.sync(cloud) == [r.thing]
    assert pool.sync(cloud) == []  # idempotent
    assert _shape(cloud, r.thing) == _shape(cloud, ref.thing)  # same registry as an online flash
    deadline = time.monotonic() + 90  # the board's firmware retries and gets in once registered
    while not cloud.connectivity(r.thing)["connected"] and time.monotonic() < deadline:
        time.sleep(0.5)
    assert cloud.connectivity(r.thing)["connected"]

    # an empty pool is a clear stop before any board starts, not a failed board
    pool.take("00:00:00:00:00:01", "fd-drain")
    rows = len(db.attempts())
    with pytest.raises(PoolEmpty, match="pool is empty"):
        offline.run_one(offline_board.url)
    assert len(db.attempts()) == rows


def test_pool_cli_refill_status_and_a_clear_error(sandbox, tmp_path):
    import subprocess
    import sys

    def pool(*args):
        r = subprocess.run([sys.executable, "-m", "fleetdesk", "boards", "pool", *args], capture_output=True,
                           text=True, timeout=120)
        return r.returncode, r.stdout, r.stderr

    code, out, err = pool("refill", "2", "--state-dir", sandbox.state_dir, "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["free"] == 2 and doc["added"] == 2
    code, out, _ = pool("status")
    assert code == 0 and "free: 2" in out
    code, out, err = pool("refill", "4", "--state-dir", str(tmp_path / "no-sandbox-here"))
    assert code == 2 and "fleetdesk:" in err and "Traceback" not in err
    assert pool("status", "--json")[1] and json.loads(pool("status", "--json")[1])["free"] == 2  # nothing lost
