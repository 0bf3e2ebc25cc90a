"""A line station whose PostgreSQL ledger goes away keeps flashing from its own share of the
line's pool and its local outbox; when the database is back the line's pool hears what became
of each certificate and the registry ends up as with online flashing."""

from __future__ import annotations

import os

import pytest

import fleetdesk.boards.certpool as certpool
from fleetdesk.boards.certpool import CertPool, PoolEmpty
from fleetdesk.boards.identity import CloudTarget
from fleetdesk.store.ledger import Ledger
from pg_server import PgServer

pytestmark = pytest.mark.slow


@pytest.fixture
def own_server():
    server = PgServer()  # stopped and started by the test: not the session's shared one
    try:
        yield server
    finally:
        server.stop()


def test_offline_station_flashes_from_its_share_and_syncs_to_the_registry(own_server, sandbox, tmp_path,
                                                                           monkeypatch):
    monkeypatch.setattr(certpool, "RECONNECT_S", 0.0)
    url = own_server.create_db("line")
    cloud = CloudTarget.from_sandbox(sandbox.state_dir)
    pool = CertPool(tmp_path, ledger=url)
    assert pool.refill(cloud, 3) == 3 and pool.line_level() == 3
    assert pool.reserve(2) == 2  # this station's share, for when the line's database is away
    line = Ledger(url)
    assert sorted(r["state"] for r in line.all("SELECT state FROM pool")) == ["free", "reserved", "reserved"]
    line.close()

    own_server.pause()
    macs = ["24:6f:28:" + os.urandom(3).hex(":") for _ in range(2)]
    taken = [pool.take(m, "fd-" + m.replace(":", ""), {"mac": m.replace(":", "")}) for m in macs]
    for cert in taken:
        pool.flashed(cert.certificate_id)
    with pytest.raises(PoolEmpty):  # the share is used up and the line's third certificate is out of reach
        pool.take("24:6f:28:00:00:99", "fd-nope")

    own_server.resume()
    report = pool.sync(cloud)  # the line hears first (push), then the registry
    assert sorted(report) == sorted("fd-" + m.replace(":", "") for m in macs) and not report.failed
    line = Ledger(url)
    rows = {r["certificate_id"]: r for r in line.all("SELECT certificate_id, state, mac FROM pool")}
    for cert, mac in zip(taken, macs):
        assert rows[cert.certificate_id]["state"] == "synced" and rows[cert.certificate_id]["mac"] == mac
        thing = "fd-" + mac.replace(":", "")
        principals = cloud.iot.list_thing_principals(thingName=thing)["principals"]
        assert [p.rsplit("/", 1)[1] for p in principals] == [cert.certificate_id]
    assert [r["state"] for r in rows.values()].count("free") == 1  # the third is still the line's
    line.close()
    pool.close()
