"""An empty offline certificate pool is a clear stop, not a failure per board (issue 10 §6):
`fleetdesk flash --offline-pool` stops before any board
starts, with one message, and writes no FAIL row (no run, no journal) for any board.
The Stations page's side is tests/gui/test_empty_pool_page.py."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from empty_pool import empty_pool, pipeline_runs  # noqa: F401  (fixture)

from fleetdesk.boards.certpool import CertPool
from fleetdesk.boards.controller import StationController
from fleetdesk.boards.identity import CloudTarget
from fleetdesk.boards.station import StationSettings
from fleetdesk.store.production import ProductionDB, default_db_path

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


def test_cli_flash_with_an_empty_pool_exits_with_one_message(rig, bundle_dir, sandbox, empty_pool):
    boards = rig.add(2)
    cmd = [sys.executable, "-m", "fleetdesk", "flash", *(b.url for b in boards), "--bundle", str(bundle_dir),
           "--identity", "--offline-pool", "--state-dir", sandbox.state_dir]
    for extra in ([], ["--json"]):
        proc = subprocess.run(cmd + extra, capture_output=True, text=True, timeout=120, env=dict(os.environ))
        assert proc.returncode != 0 and proc.stdout == "", (proc.returncode, proc.stdout)  # no line per board
        assert proc.stderr.count("offline certificate pool is empty") == 1, proc.stderr
        assert "refill" in proc.stderr
    assert ProductionDB().attempts() == [] and pipeline_runs(default_db_path()) == 0

    # the pool without identity would flash boards with none: refused up front, clearly
    proc = subprocess.run([a for a in cmd if a != "--identity"], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ))
    assert proc.returncode != 0 and proc.stdout == "", proc.stdout
    assert "identity is off" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert ProductionDB().attempts() == []


def test_a_short_pool_starts_only_the_boards_it_can_serve(rig, bundle_dir, tmp_path, sandbox):
    """2 certificates for 3 boards: two flash (offline identities), the third waits with a
    message instead of a FAIL; the CLI says which ports it left and exits non-zero."""
    cloud = CloudTarget.from_sandbox(sandbox.state_dir)
    assert CertPool().refill(cloud, 2) == 2
    boards = rig.add(3, register=True)
    db = ProductionDB(tmp_path / "prod.sqlite3")
    ctl = StationController(StationSettings(bundle=str(bundle_dir), identity=True, offline_pool=True,
                                            wait_online=False, boot_wait=0), cloud=cloud, db=db,
                            lister=lambda: [p for p in __import__("fleetdesk.boards.ports", fromlist=["x"])
                                            .list_ports(False) if p.device in {b.url for b in boards}])
    ctl.start_watching()
    try:
        import time

        deadline = time.monotonic() + 5
        while len(ctl.tiles) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ctl.start_all() == 2
        assert ctl.wait_idle(120)
        states = sorted(ctl.tiles.values(), key=lambda t: t.state)
        assert [t.state for t in states] == ["PASS", "PASS", "idle"], [(t.state, t.message, t.last_result and t.last_result.error) for t in states]
        assert "pool ran out" in states[2].message and states[2].failed == 0
        assert [r["result"] for r in db.attempts()] == ["PASS", "PASS"]
    finally:
        ctl.close()

    assert CertPool().refill(cloud, 1) == 1
    fresh = rig.add(2)  # one certificate for three boards
    boards = [fresh[0], boards[2], fresh[1]]
    proc = subprocess.run([sys.executable, "-m", "fleetdesk", "flash", *(b.url for b in boards), "--bundle",
                           str(bundle_dir), "--identity", "--offline-pool", "--state-dir", sandbox.state_dir,
                           "--no-wait-online"], capture_output=True, text=True, timeout=120, env=dict(os.environ))
    assert proc.returncode == 1 and "pool holds 1 certificates for 3 boards" in proc.stderr, proc.stderr
    assert boards[1].url in proc.stderr and boards[2].url in proc.stderr  # named: what was left
    (line,) = proc.stdout.splitlines()
    assert line.startswith(f"PASS {boards[0].url}"), line
