"""Kill the flashing app mid-write, start it again: the interrupted run is recovered (its
certificate set INACTIVE, never left ACTIVE), no half-written attempt row, and the board PASSes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from fleetdesk.boards.identity import CloudTarget
from fleetdesk.store.production import ProductionDB

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def _flash_cmd(url, bundle_dir, sandbox):
    return [sys.executable, "-m", "fleetdesk", "flash", url, "--bundle", str(bundle_dir), "--identity",
            "--state-dir", sandbox.state_dir, "--baud", "115200", "--json"]


def test_killed_app_leaves_no_active_orphan_cert(rig, bundle_dir, sandbox):
    (board,) = rig.add(1, throttle=True)
    proc = subprocess.Popen(_flash_cmd(board.url, bundle_dir, sandbox), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    db = ProductionDB()
    run = None
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and run is None:
            for r in db.unfinished_runs():
                if r["certificate_id"] and r["last_step"] in ("write:begin", "write:done", "verify:begin"):
                    run = r
            time.sleep(0.05)
        assert run is not None, proc.communicate(timeout=60)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        proc.stdout.close()
        proc.stderr.close()
    cloud = CloudTarget.from_sandbox(sandbox.state_dir)

    def status(cert):
        return cloud.iot.describe_certificate(certificateId=cert)["certificateDescription"]["status"]

    assert status(run["certificate_id"]) == "ACTIVE"  # the killed app could not clean up
    assert db.attempts() == []  # no half-written production row
    rig.wait_released(board)  # the orphaned worker notices its host is gone and releases the port

    res = subprocess.run(_flash_cmd(board.url, bundle_dir, sandbox), capture_output=True, text=True, timeout=240)
    assert "recovered an interrupted run" in res.stderr and "orphan certificate deactivated" in res.stderr
    line = json.loads(res.stdout.splitlines()[-1])
    assert res.returncode == 0 and line["result"] == "PASS", (line["error"], line["console_tail"][-3:])
    assert status(run["certificate_id"]) == "INACTIVE"
    assert status(line["certificate_id"]) == "ACTIVE" and line["thing"] == run["thing"]
    assert db.unfinished_runs() == []
    assert "orphan certificate deactivated" in db.run(run["run_id"])["recovered"]
    assert [a["result"] for a in db.attempts()] == ["PASS"]
