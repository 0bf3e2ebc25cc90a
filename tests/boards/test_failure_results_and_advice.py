"""What a failed flash reports: a pipeline refusal shows its own advice, and a result after a fallback
remembers that the first attempt already wrote to the board.
"""

from __future__ import annotations

import pytest
from netutil import refused_port

from fleetdesk.store.production import ProductionDB

from .station_checks import cloud, new_mac, review_station  # noqa: F401  (cloud: the fixture)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def test_a_pipeline_refusal_shows_its_own_advice(rig, bundle_dir, tmp_path, cloud):
    (board,) = rig.add(1, mac=new_mac())
    station = review_station(bundle_dir, cloud, ProductionDB(tmp_path / "prod.sqlite3"), restore_identity=True)
    r = station.run_one(board.url)
    assert r.result == "FAIL" and "no identity on file" in r.error
    assert "re-plug" not in r.advice and "without --restore-identity" in r.advice, r.advice


def test_fallback_result_remembers_that_the_first_attempt_wrote(bundle_dir):
    from fleetdesk.boards.flasher import FlashJob, WorkerResult
    from fleetdesk.boards.images import load_plan

    attempts = iter([WorkerResult(False, "serial", "Connection reset mid-write", written=True),
                     WorkerResult(False, "esptool", "Failed to connect", written=False)])

    class Job(FlashJob):  # the two worker outcomes, without a board
        def _once(self, job):
            return next(attempts)

    result = Job(f"socket://127.0.0.1:{refused_port()}", load_plan(str(bundle_dir)), baud=460800).run()
    assert result.baud_fallback and not result.ok
    assert result.written, "bytes were written at 460800 but the job reports nothing written"
