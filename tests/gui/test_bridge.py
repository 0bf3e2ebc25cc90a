"""fleetdesk_gui.bridge: callbacks from other threads land on the Qt thread, in order, in <= 50 ms slices."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from fleetdesk_gui import bridge
from fleetdesk_gui.bridge import Bridge

pytestmark = [pytest.mark.gui, pytest.mark.timeout(60)]


def test_post_from_many_threads_runs_all_on_the_qt_thread_in_order(qtbot):
    b = Bridge()
    seen: list[tuple[int, int]] = []
    threads_seen: set[int] = set()

    def record(tid: int, i: int) -> None:
        threads_seen.add(threading.get_ident())
        seen.append((tid, i))

    def worker(tid: int) -> None:
        for i in range(500):
            b.post(record, tid, i)

    workers = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    qtbot.waitUntil(lambda: len(seen) == 2000, timeout=10000)
    assert threads_seen == {threading.get_ident()}
    for tid in range(4):
        assert [i for t, i in seen if t == tid] == list(range(500)), "a thread's callbacks ran out of order"


def test_a_burst_is_drained_in_slices_so_the_ui_keeps_painting(qtbot):
    b = Bridge()
    done = []
    for i in range(300):
        b.post(lambda i=i: (time.sleep(0.001), done.append(i)))
    # A timer that must get a turn while the queue is still draining.
    ticks = []
    from PySide6.QtCore import QTimer

    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(len(done)))
    timer.start(5)
    qtbot.waitUntil(lambda: len(done) == 300, timeout=10000)
    timer.stop()
    assert b.slices >= 4, f"300 ms of work ran in {b.slices} slice(s)"
    assert any(0 < n < 300 for n in ticks), "no timer tick ran between slices"


def test_a_failing_callback_does_not_stop_the_rest(qtbot):
    b = Bridge()
    done = []
    b.post(lambda: 1 / 0)
    b.post(done.append, "after")
    qtbot.waitUntil(lambda: done == ["after"], timeout=5000)


def test_submit_delivers_result_and_error_on_the_qt_thread(qloop):
    results = []

    async def ok():
        await asyncio.sleep(0.01)
        return 42

    async def bad():
        raise ValueError("nope")

    async def scenario():
        bridge.submit(ok(), lambda r, e: results.append((r, e, threading.get_ident())))
        bridge.submit(bad(), lambda r, e: results.append((r, type(e).__name__, threading.get_ident())))
        bridge.run_blocking(sum, [1, 2, 3], on_done=lambda r, e: results.append((r, e, threading.get_ident())))
        while len(results) < 3:
            await asyncio.sleep(0.01)

    qloop.run_until_complete(asyncio.wait_for(scenario(), 10))
    main = threading.get_ident()
    assert sorted(results, key=str) == sorted([(42, None, main), (None, "ValueError", main), (6, None, main)], key=str)


def test_a_lost_wake_up_does_not_stall_the_bridge(qtbot):
    b = Bridge()
    done = []
    with b._lock:  # as if a wake-up had been lost while an event loop was torn down
        b._scheduled, b._scheduled_at = True, time.monotonic() - 5
    b.post(done.append, 1)
    qtbot.waitUntil(lambda: done == [1], timeout=3000)
