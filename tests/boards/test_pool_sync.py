"""Offline pool bookkeeping (issue 10 §6, review findings 12 and 18): a board's sync registers
its own thing only (never one still being written), a refused row does not stop the others,
a refusal is a FAIL (not "PASS, sync pending"), a certificate written to a board that failed
is never synced nor handed out again and is set INACTIVE at the next sync; in factory mode a
board waits for a certificate instead of FAILing when the running boards hold them all."""

from __future__ import annotations

import json
import os
import time

import pytest

from fleetdesk.boards.certpool import CertPool
from fleetdesk.boards.identity import CloudTarget
from fleetdesk.boards.station import Station, StationSettings
from fleetdesk.store.production import ProductionDB

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def _mac() -> str:  # a board new to the session's sandbox
    return "24:6f:28:" + os.urandom(3).hex(":")


def _thing(mac: str) -> str:
    return "fd-" + mac.replace(":", "")


def _status(cloud, cert_id: str) -> str:
    return cloud.iot.describe_certificate(certificateId=cert_id)["certificateDescription"]["status"]


def _registered(cloud, thing: str) -> bool:
    try:
        cloud.iot.describe_thing(thingName=thing)
        return True
    except cloud.iot.exceptions.ResourceNotFoundException:
        return False


class _Refusal:
    """The control plane answers CreateThing for ``thing`` with 403 AccessDeniedException (an
    IAM policy without iot:CreateThing), at the HTTP layer: botocore parses a real error reply."""

    def __init__(self, cloud, thing: str) -> None:
        self.iot, self.thing, self.refused = cloud.iot, thing, 0

    def _send(self, request, **_kw):
        from botocore.awsrequest import AWSResponse

        if f"/things/{self.thing}" not in request.url or request.method != "POST":
            return None
        self.refused += 1
        body = json.dumps({"message": f"User is not authorized to perform: iot:CreateThing on {self.thing}"}).encode()

        class Raw:
            def stream(self, **_kw):
                yield body

        return AWSResponse(request.url, 403, {"x-amzn-ErrorType": "AccessDeniedException:",
                                              "Content-Type": "application/json"}, Raw())

    def __enter__(self):
        self.iot.meta.events.register("before-send.iot.CreateThing", self._send)
        return self

    def __exit__(self, *exc) -> None:
        self.iot.meta.events.unregister("before-send.iot.CreateThing", self._send)


@pytest.fixture
def cloud(sandbox):
    return CloudTarget.from_sandbox(sandbox.state_dir)


def test_sync_leaves_boards_in_flight_alone_and_goes_past_a_refused_row(cloud):
    pool = CertPool()
    assert pool.refill(cloud, 3) == 3
    macs = [_mac() for _ in range(3)]
    refused, writing, done = (pool.take(m, _thing(m), {"mac": m.replace(":", "")}) for m in macs)
    pool.flashed(refused.certificate_id)  # flashed offline; the cloud will refuse its thing
    pool.flashed(done.certificate_id)  # flashed offline
    # `writing`'s board is still being written: no sync may register it

    with _Refusal(cloud, _thing(macs[0])) as refusal:
        report = pool.sync(cloud)
    assert refusal.refused == 1
    assert list(report) == [_thing(macs[2])], "the sync stopped at the refused row"
    assert [(f.thing, f.refused) for f in report.failed] == [(_thing(macs[0]), True)]
    assert "not authorized" in report.failed[0].reason
    assert _registered(cloud, _thing(macs[2])) and not _registered(cloud, _thing(macs[0]))
    assert not _registered(cloud, _thing(macs[1])), "a board still being written was registered"
    assert pool.state(refused.certificate_id) == "pending" and pool.state(writing.certificate_id) == "assigned"

    assert pool.sync(cloud, certificate_id=writing.certificate_id) == [_thing(macs[1])]  # its own pipeline
    assert pool.sync(cloud) == [_thing(macs[0])]  # refusal lifted: the next sync resumes
    assert pool.sync(cloud) == [] and pool.pending() == 0

    # a row that failed meanwhile is never marked synced, and its certificate is retired
    assert pool.refill(cloud, 1) == 1
    late_mac = _mac()
    late = pool.take(late_mac, _thing(late_mac))
    assert pool.fail(late.certificate_id)
    report = pool.sync(cloud, certificate_id=late.certificate_id)
    assert list(report) == [] and report.failed and "failed" in report.failed[0].reason
    assert pool.state(late.certificate_id) == "retired" and _status(cloud, late.certificate_id) == "INACTIVE"


def test_a_refused_registration_fails_the_board_and_retires_its_certificate(rig, bundle_dir, tmp_path, cloud):
    pool = CertPool()
    assert pool.refill(cloud, 2) == 2
    mac = _mac()
    (board,) = rig.add(1, mac=mac)
    db = ProductionDB(tmp_path / "prod.sqlite3")
    station = Station(StationSettings(bundle=str(bundle_dir), identity=True, offline_pool=True, wait_online=False,
                                      boot_wait=0.3, station="sync"), cloud=cloud, db=db)
    try:
        with _Refusal(cloud, _thing(mac)) as refusal:
            res = station.run_one(board.url)
        assert refusal.refused >= 1
        assert res.result == "FAIL" and not res.pending_sync, (res.result, res.error)
        assert "refused to register" in res.error and "not authorized" in res.error, res.error
        cert = res.certificate_id
        assert pool.state(cert) == "failed", "a certificate on a failed board stays in the pool's sync queue"
        assert pool.pending() == 0 and pool.failed() == 1

        assert pool.sync(cloud) == []  # online again: nothing to register, the failed one is retired
        assert pool.state(cert) == "retired" and _status(cloud, cert) == "INACTIVE"
        assert not _registered(cloud, _thing(mac))

        again = station.run_one(board.url)  # the board is flashed again: a fresh, ACTIVE certificate
        assert again.result == "PASS" and not again.pending_sync, again.error
        assert again.certificate_id != cert and _status(cloud, again.certificate_id) == "ACTIVE"
        assert pool.state(again.certificate_id) == "synced" and _registered(cloud, _thing(mac))
    finally:
        station.close()


def test_factory_mode_boards_wait_for_a_certificate_instead_of_failing(rig, bundle_dir, tmp_path, cloud):
    """3 free certificates, 5 boards plugged in one after another with auto-start on: three
    flash, two wait (no FAIL, a clear message) and start by themselves after a refill."""
    from fleetdesk.boards.controller import StationController
    from fleetdesk.boards.ports import list_ports

    assert CertPool().refill(cloud, 3) == 3
    boards = rig.add(5, register=True)
    plugged: list[str] = []
    db = ProductionDB(tmp_path / "prod.sqlite3")
    ctl = StationController(StationSettings(bundle=str(bundle_dir), identity=True, offline_pool=True,
                                            wait_online=False, boot_wait=3.0, station="factory"),
                            cloud=cloud, db=db, poll_interval=0.05,
                            lister=lambda: [p for p in list_ports(False) if p.device in plugged])
    ctl.auto_start = True
    ctl.start_watching()
    try:
        for b in boards:  # one after another, each while the first ones are still flashing
            plugged.append(b.url)
            deadline = time.monotonic() + 10
            while not any(t.port == b.url for t in ctl.tiles.values()) and time.monotonic() < deadline:
                time.sleep(0.02)
        by_port = lambda: {t.port: t for t in ctl.tiles.values()}  # noqa: E731
        assert ctl.wait_idle(150)
        tiles = by_port()
        assert sorted(t.state for t in tiles.values()) == ["PASS", "PASS", "PASS", "idle", "idle"], \
            [(t.state, t.message) for t in tiles.values()]
        waiting = [t for t in tiles.values() if t.state == "idle"]
        assert all(t.failed == 0 and t.message == "waiting: certificate pool empty — refill it" for t in waiting), \
            [t.message for t in waiting]
        assert [r["result"] for r in db.attempts()] == ["PASS"] * 3  # no FAIL row for a waiting board

        assert ctl.refill_pool(2) == 2  # back online: the waiting boards start by themselves
        deadline = time.monotonic() + 10
        while not ctl.busy and time.monotonic() < deadline:
            time.sleep(0.02)
        assert ctl.wait_idle(150)
        assert sorted(t.state for t in by_port().values()) == ["PASS"] * 5, \
            [(t.state, t.message) for t in by_port().values()]
        assert sum(t.failed for t in by_port().values()) == 0
    finally:
        ctl.close()


def test_cli_pool_sync_registers_offline_boards_and_names_a_refusal(cloud, sandbox, capsys, monkeypatch):
    """`fleetdesk boards pool sync`: boards flashed offline get their things; a refused one is
    reported on stderr with the cloud's reason and stays pending (exit 1 until nothing is refused)."""
    from fleetdesk.cli import main

    pool = CertPool()
    assert pool.refill(cloud, 2) == 2
    macs = [_mac() for _ in range(2)]
    for m in macs:
        pool.flashed(pool.take(m, _thing(m), {"mac": m.replace(":", "")}).certificate_id)
    argv = ["boards", "pool", "sync", "--state-dir", str(sandbox.state_dir), "--json"]
    # the refusal happens in the CLI's own boto3 client: refuse at the HTTP layer of every iot client
    import botocore.session

    made = botocore.session.Session.create_client
    refusals = []

    def create_client(self, service_name, *a, **kw):
        client = made(self, service_name, *a, **kw)
        if service_name == "iot":
            refusals.append(_Refusal(type("C", (), {"iot": client})(), _thing(macs[0])).__enter__())
        return client

    with monkeypatch.context() as patch:  # only this patch: the isolation fixture's env stays
        patch.setattr(botocore.session.Session, "create_client", create_client)
        capsys.readouterr()
        assert main(argv) == 1
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert out["synced"] == [_thing(macs[1])] and out["pending_sync"] == 1
    assert [r["thing"] for r in out["refused"]] == [_thing(macs[0])] and "not authorized" in out["refused"][0]["reason"]
    assert f"the cloud refused to register {_thing(macs[0])}" in captured.err
    assert _registered(cloud, _thing(macs[1])) and not _registered(cloud, _thing(macs[0]))
    for r in refusals:  # clients may be cached: lift the refusal on each
        r.__exit__()
    assert sum(r.refused for r in refusals) == 1
    assert main(argv) == 0  # the refusal lifted: the next sync registers the rest
    out = json.loads(capsys.readouterr().out)
    assert out["synced"] == [_thing(macs[0])] and out["pending_sync"] == 0 and "refused" not in out
    assert _registered(cloud, _thing(macs[0]))
