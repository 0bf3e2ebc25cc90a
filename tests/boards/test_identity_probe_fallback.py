"""The identity probe and the baud fallback: one attempt's worker ending is not the end of the job,
and a prepare waiting for that attempt's identity stops waiting when its worker ends (else the
attempt waited for its prepare and the prepare for the identity: 120 s, then FAIL, no fallback)."""

from __future__ import annotations

import asyncio

import pytest
from netutil import refused_port

from fleetdesk.boards.flasher import AttemptEnded, FlashJob, WorkerResult
from fleetdesk.boards.images import load_plan
from fleetdesk.boards.station import Station, StationSettings
from fleetdesk.errors import BoardError
from fleetdesk.store.production import ProductionDB

pytestmark = pytest.mark.timeout(240)

CHANGE_BAUDRATE = 0x0F  # esptool's command after the stub is up, before the identity probe


def _fails_at_baud_change(rig, board, how: str) -> list[str]:
    """``board``'s line gives out when esptool switches it to 460800 (after Ready, before the
    identity is read): ``drop`` breaks the connection once (a marginal cable), ``unplug`` takes
    the port away for good. Returns the list the fault is recorded in."""
    fired: list[str] = []
    real = board._on_packet

    async def on_packet(client, packet):
        if len(packet) > 1 and packet[0] == 0 and packet[1] == CHANGE_BAUDRATE and not fired:
            fired.append(how)
            if how == "drop":
                board.drop_connections()
            else:
                asyncio.ensure_future(board.unplug())
            return
        await real(client, packet)

    board._on_packet = on_packet
    return fired


def _identity_job(board, bundle_dir, seen: list):
    """A FlashJob whose prepare (on the worker's Ready) waits for the identity the worker reads."""
    plan = load_plan(str(bundle_dir))

    def prepare(facts):
        try:
            seen.append(job.board_identity())
        except BaseException as exc:  # recorded for the test to assert on, then raised
            seen.append(exc)
            raise
        return plan

    job = FlashJob(board.url, plan, baud=460800, prepare=prepare, probe_identity=True)
    return job


def test_a_line_that_fails_before_the_identity_read_falls_back_and_reads_it_at_115200(rig, bundle_dir):
    (board,) = rig.add(1, throttle=False)
    fired = _fails_at_baud_change(rig, board, "drop")
    seen: list = []
    result = _identity_job(board, bundle_dir, seen).run()
    assert fired == ["drop"], "the fault never fired: the test did not exercise the failed first attempt"
    assert result.ok and result.baud_fallback, (result.kind, result.error)
    assert len(seen) == 2 and isinstance(seen[0], AttemptEnded), seen  # attempt 1's prepare let go at once
    assert seen[1].found is False and seen[1].reason == "erased"  # read by the 115200 retry
    assert board.flash.read(0x10000, 64) == (bundle_dir / "app.bin").read_bytes()[:64]


def test_a_port_that_vanishes_before_the_identity_read_fails_with_the_serial_error(rig, bundle_dir):
    (board,) = rig.add(1, throttle=False)
    fired = _fails_at_baud_change(rig, board, "unplug")
    seen: list = []
    result = _identity_job(board, bundle_dir, seen).run()
    assert fired == ["unplug"]
    assert not result.ok and result.baud_fallback and result.kind in ("serial", "esptool"), (result.kind, result.error)
    assert "identity" not in result.error, result.error  # the cable's fault, not an identity step's
    assert len(seen) == 1 and isinstance(seen[0], AttemptEnded), seen  # the retry never got to Ready


@pytest.mark.slow
def test_station_passes_a_board_whose_first_attempt_ends_before_the_identity_read(rig, bundle_dir, tmp_path):
    (board,) = rig.add(1, throttle=False)
    fired = _fails_at_baud_change(rig, board, "drop")
    settings = StationSettings(bundle=str(bundle_dir), identity=False, wait_online=False, station="line-1", baud=460800)
    r = Station(settings, db=ProductionDB(tmp_path / "prod.sqlite3")).run_one(board.url)
    assert fired == ["drop"]
    assert r.result == "PASS" and r.baud_fallback, r.error
    assert "fell back to 115200 baud" in r.notes()
    assert r.board_identity["found"] is False


def test_no_identity_from_any_attempt_names_the_last_error(bundle_dir):
    attempts = iter([WorkerResult(False, "serial", "Connection reset at 460800 baud"),
                     WorkerResult(False, "esptool", "Failed to connect to ESP32")])

    class Job(FlashJob):  # two failed attempts, without a board
        def _once(self, job):
            return next(attempts)

    job = Job(f"socket://127.0.0.1:{refused_port()}", load_plan(str(bundle_dir)), baud=460800, probe_identity=True)
    job.run()
    with pytest.raises(BoardError, match=r"identity could not be read \(Failed to connect to ESP32\)"):
        job.board_identity(timeout=5)
