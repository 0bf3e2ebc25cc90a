"""An offline certificate pool that is used up (``empty_pool``) and the count of pipeline runs a DB
holds: the empty-pool tests of the CLI (tests/boards) and of the Stations page (tests/gui) use them."""

from __future__ import annotations

import sqlite3

import pytest

from fleetdesk.boards.certpool import CertPool
from fleetdesk.boards.identity import CloudTarget


@pytest.fixture
def empty_pool(sandbox):
    """A pool filled once while online (it knows the endpoint), then used up."""
    cloud = CloudTarget.from_sandbox(sandbox.state_dir)
    pool = CertPool()
    assert pool.refill(cloud, 1) == 1
    pool.take("24:6f:28:00:00:01", "fd-used-up")
    assert pool.level() == 0
    return cloud


def pipeline_runs(db_path) -> int:
    """Pipeline runs ever started (a board that started has one, even before its FAIL row)."""
    with sqlite3.connect(db_path) as con:
        return con.execute("SELECT COUNT(*) FROM runs").fetchone()[0] + \
            con.execute("SELECT COUNT(*) FROM journal").fetchone()[0]
