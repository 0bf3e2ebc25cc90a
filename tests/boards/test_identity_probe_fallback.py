"""The identity probe survives a baud fallback: the first worker ending is not the end of the job."""

from __future__ import annotations

import threading

import pytest
from netutil import refused_port

from fleetdesk.boards.events import Identity
from fleetdesk.boards.flasher import FlashJob, WorkerResult
from fleetdesk.boards.images import load_plan
from fleetdesk.errors import BoardError


class _EndedWorker:
    """A worker whose process has exited (what FlashJob sees after a failed attempt)."""

    def __init__(self) -> None:
        self._done = threading.Event()
        self._done.set()

    def cancel(self) -> None:
        pass


def _job(bundle_dir, attempts):
    class Job(FlashJob):  # two worker outcomes, without a board
        def _once(self, job):
            self._worker = _EndedWorker()
            return next(attempts)(self)

    return Job(f"socket://127.0.0.1:{refused_port()}", load_plan(str(bundle_dir)), baud=460800, probe_identity=True)


def test_identity_read_by_the_fallback_attempt_is_used(bundle_dir):
    first_ended, go_on = threading.Event(), threading.Event()

    def first(job):  # fails at 460800 before the probe: the worker is gone
        first_ended.set()
        assert go_on.wait(10), "the identity reader never got to see the ended worker"
        return WorkerResult(False, "serial", "Connection reset at 460800 baud")

    def second(job):  # the 115200 retry reads the (blank) board
        job._on_worker_event(Identity(found=False, reason="blank"))
        return WorkerResult(True, "ok", "")

    job = _job(bundle_dir, iter([first, second]))
    runner = threading.Thread(target=job.run)
    runner.start()
    assert first_ended.wait(10)
    got: list = []
    reader = threading.Thread(target=lambda: got.append(_call(job.board_identity, timeout=30)))
    reader.start()
    reader.join(0.5)  # the reader polls every 0.1 s: it has seen the ended first worker by now
    go_on.set()
    reader.join(30)
    runner.join(30)
    assert got and not isinstance(got[0], BaseException), got
    assert got[0].found is False and got[0].reason == "blank"


def test_no_identity_from_any_attempt_names_the_last_error(bundle_dir):
    job = _job(bundle_dir, iter([lambda j: WorkerResult(False, "serial", "Connection reset at 460800 baud"),
                                 lambda j: WorkerResult(False, "esptool", "Failed to connect to ESP32")]))
    job.run()
    with pytest.raises(BoardError, match=r"identity could not be read \(Failed to connect to ESP32\)"):
        job.board_identity(timeout=5)


def _call(fn, **kw):
    try:
        return fn(**kw)
    except BaseException as exc:  # noqa: BLE001 - handed to the test thread to assert on
        return exc
