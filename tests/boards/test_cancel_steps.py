"""Cancel is clean at any step (issue 10): STOP a board during detect, identity, write, verify,
boot or online. Each time: the result is FAIL "cancelled", the journal ends with the step it
stopped in, no certificate that run minted is left ACTIVE, no esptool worker is left running,
and the same port flashes to PASS right after."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from fleetdesk.boards.identity import CloudTarget
from fleetdesk.boards.station import STAGES, Station, StationSettings
from fleetdesk.store.production import ProductionDB

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def _workers() -> list[int]:
    """esptool worker processes that are children of this test process."""
    me, out = os.getpid(), []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmd = (d / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == me and b"fleetdesk.boards.worker" in cmd:
            out.append(int(d.name))
    return out


def _wait_no_workers(timeout: float = 20) -> list[int]:
    deadline = time.monotonic() + timeout
    while (left := _workers()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def _status(cloud, cert_id: str) -> str:
    return cloud.iot.describe_certificate(certificateId=cert_id)["certificateDescription"]["status"]


@pytest.fixture
def cloud(sandbox):
    return CloudTarget.from_sandbox(sandbox.state_dir)


# "identity+minted": STOP the moment the cloud has made the board's thing + certificate;
# "boot+nowait": a station that does not wait for presence, STOP while it keeps the boot console
@pytest.mark.parametrize("when", [*STAGES, "identity+minted", "boot+nowait"])
def test_cancel_at_each_step_is_clean(when, rig, bundle_dir, tmp_path, cloud):
    stage = when.split("+")[0]
    # throttled (line-rate) writes keep write/verify open long enough to land a STOP in them
    (board,) = rig.add(1, throttle=stage in ("write", "verify"), mac="24:6f:28:" + os.urandom(3).hex(":"))
    db = ProductionDB(tmp_path / "prod.sqlite3")
    station = Station(StationSettings(bundle=str(bundle_dir), identity=True, baud=460800, online_timeout=90,
                                      wait_online=when != "boot+nowait", boot_wait=0.5 if when != "boot+nowait" else 30),
                      cloud=cloud, db=db)
    seen: list[str] = []
    fired = threading.Event()

    def on_event(port, ev):
        if ev.stage is not None:
            seen.append(ev.stage)
        # detect: once the esptool worker itself is connecting (its own stage event, no "state")
        if (not fired.is_set() and ev.stage == stage and when == stage
                and (stage != "detect" or ev.state is None)):
            fired.set()
            station.cancel_all()
        if when == "boot+nowait" and seen.count("boot") == 2 and not fired.is_set():
            fired.set()  # the pipeline's own boot (after the esptool job's): STOP during its console wait
            threading.Timer(0.3, station.cancel_all).start()

    def on_minted(**_kw):
        if not fired.is_set():
            fired.set()
            station.cancel_all()

    if when == "identity+minted":  # the last call of minting an identity (thing, cert, policy, attach)
        cloud.iot.meta.events.register("after-call.iot.AttachThingPrincipal", on_minted)

    try:
        res = station.run_one(board.url, on_event)
        assert fired.is_set(), f"never reached {stage}: {seen}"
        assert res.result == "FAIL" and "cancelled" in res.error, (res.error, seen)
        assert res.advice_code == "cancelled"
        journal = db.journal(res.run_id)
        rows = [(j["step"], j["status"], j["detail"][:50]) for j in journal]
        failed = [j for j in journal if j["status"] == "failed"]
        assert [(j["step"], "cancelled" in j["detail"]) for j in failed] == [(stage, True)], rows
        later = STAGES[STAGES.index(stage) + 1:]  # nothing begun after the step it stopped in
        assert not [j for j in journal if j["step"] in later and j["status"] == "begin"], journal
        assert db.run(res.run_id)["finished_at"] and db.unfinished_runs() == []
        minted = db.run(res.run_id)["certificate_id"]
        if when == "detect":
            assert minted is None  # stopped before any identity was created
        if when == "identity+minted" and minted is None:
            # STOP landed before the certificate minted ahead was taken: it was deleted, never left ACTIVE
            unused = [j for j in journal if (j["step"], j["status"]) == ("identity", "unused")]
            assert unused and '"deleted": true' in unused[0]["detail"], rows
        elif minted or when not in ("detect", "identity"):  # rolled back after the stop, and journaled so
            assert minted and _status(cloud, minted) == "INACTIVE"
            assert ("rollback", "done") in [(j["step"], j["status"]) for j in journal[journal.index(failed[0]):]], rows
        if when == "identity+minted":
            cloud.iot.meta.events.unregister("after-call.iot.AttachThingPrincipal", on_minted)
        assert _wait_no_workers() == []

        station.settings.boot_wait = 0.5
        again = station.run_one(board.url)
        assert again.result == "PASS", (again.error, again.console_tail[-3:])
        assert again.certificate_id != minted and _status(cloud, again.certificate_id) == "ACTIVE"
        assert [a["result"] for a in db.attempts()] == ["FAIL", "PASS"]
    finally:
        station.cancel_all()
        station.close()
    assert _wait_no_workers() == []
