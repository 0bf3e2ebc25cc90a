"""The one place where other threads and asyncio cross into Qt.

* ``post(fn, *args)`` — from ANY thread (awscrt callbacks, worker threads, asyncio):
  queue ``fn(*args)`` to run on the Qt main thread. The queue is drained in slices of at
  most 50 ms, so a burst of thousands of callbacks cannot freeze the window.
* ``submit(coro, on_done)`` — run a coroutine on the app's asyncio loop (qasync, on the Qt
  thread); ``on_done(result, error)`` is called on the Qt thread with exactly one of them set.
* ``run_blocking(fn, *args, on_done=...)`` — run a blocking call (boto3, esptool) in a
  worker thread, same callback shape.

Pages refresh on their own timers (never per message), so nothing here throttles calls.

Pattern from picard's ``picard/util/thread.py`` (run_task / to_main / 50 ms batches).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import functools
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal

log = logging.getLogger(__name__)

BATCH_BUDGET_S = 0.050
STALE_S = 0.5
Callback = Callable[[Any, BaseException | None], None]


class Bridge(QObject):
    """Queue of callables to run on the Qt thread, drained in <= 50 ms slices.

    Create it on the Qt main thread (after the QApplication). ``post`` is thread-safe.
    """

    _wake = Signal()

    def __init__(self, parent: QObject | None = None, budget_s: float = BATCH_BUDGET_S) -> None:
        super().__init__(parent)
        self.budget_s = budget_s
        self._queue: collections.deque[tuple[Callable, tuple]] = collections.deque()
        self._lock = threading.Lock()
        self._scheduled = False
        self._scheduled_at = 0.0
        self.drained = 0  # callables run so far (diagnostics, tests)
        self.slices = 0  # drain slices so far
        self._timer = QTimer(self)  # one zero-delay timer: restarting it never loses a drain
        self._timer.setSingleShot(True)
        self._timer.setInterval(0)
        self._timer.timeout.connect(self._drain)
        self._wake.connect(self._schedule_drain)  # queued across threads automatically

    def post(self, fn: Callable, *args: Any) -> None:
        """Run ``fn(*args)`` on the Qt thread soon. Safe from any thread."""
        self._queue.append((fn, args))
        with self._lock:
            # Coalesce wake-ups; but never trust a flag older than STALE_S (a wake-up lost
            # while an event loop was torn down must not stall the bridge forever).
            if self._scheduled and time.monotonic() - self._scheduled_at < STALE_S:
                return
            self._scheduled = True
            self._scheduled_at = time.monotonic()
        self._wake.emit()

    def pending(self) -> int:
        """How many callables wait to run."""
        return len(self._queue)

    def _schedule_drain(self) -> None:
        if not self._timer.isActive():
            self._timer.start()

    def _drain(self) -> None:
        deadline = time.perf_counter() + self.budget_s
        self.slices += 1
        queue = self._queue
        while queue:
            fn, args = queue.popleft()
            try:
                fn(*args)
            except Exception:  # one bad callback must not stop the others
                log.exception("callback %r failed", fn)
            self.drained += 1
            if time.perf_counter() >= deadline:
                break
        with self._lock:
            if queue:
                self._scheduled_at = time.monotonic()
                self._timer.start()  # yield to paint/input, then go on
            else:
                self._scheduled = False


_instance: Bridge | None = None


def instance() -> Bridge:
    """The app-wide bridge (created on first use; call first from the Qt thread)."""
    global _instance
    if _instance is None:
        _instance = Bridge()
    return _instance


def post(fn: Callable, *args: Any) -> None:
    """Run ``fn(*args)`` on the Qt thread. Safe from any thread."""
    instance().post(fn, *args)


def on_qt(fn: Callable) -> Callable:
    """``fn`` as a callback for domain code: called at once when it arrives on the Qt thread
    (the asyncio loop under qasync), posted to the Qt thread from any other thread."""

    def call(*args: Any) -> None:
        if threading.current_thread() is threading.main_thread():
            fn(*args)
        else:
            post(fn, *args)

    return call


def _deliver(on_done: Callback | None, fut: asyncio.Future | Any) -> None:
    if on_done is None:
        if not fut.cancelled() and fut.exception() is not None:
            log.error("background task failed", exc_info=fut.exception())
        return
    if fut.cancelled():
        post(on_done, None, asyncio.CancelledError())
    elif fut.exception() is not None:
        post(on_done, None, fut.exception())
    else:
        post(on_done, fut.result(), None)


def submit(coro: Awaitable, on_done: Callback | None = None, loop: asyncio.AbstractEventLoop | None = None):
    """Run ``coro`` on the asyncio loop; ``on_done(result, error)`` later on the Qt thread.

    Args:
        coro: the coroutine (or awaitable) to run.
        on_done: called with ``(result, None)`` or ``(None, exception)``.
        loop: the loop to use (default: the running/current loop, i.e. qasync's).

    Returns:
        The asyncio Task (or concurrent Future when called from another thread).
    """
    loop = loop or _app_loop()
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    fut: asyncio.Future | concurrent.futures.Future
    if running is loop or (running is None and threading.current_thread() is threading.main_thread()):
        fut = asyncio.ensure_future(coro, loop=loop)
    else:
        fut = asyncio.run_coroutine_threadsafe(coro, loop)  # type: ignore[arg-type]
    fut.add_done_callback(functools.partial(_deliver, on_done))
    return fut


def run_blocking(fn: Callable, *args: Any, on_done: Callback | None = None):
    """Run a blocking ``fn(*args)`` in a worker thread; ``on_done(result, error)`` on Qt."""
    return submit(asyncio.to_thread(fn, *args), on_done)


_loop: asyncio.AbstractEventLoop | None = None


def set_loop(loop: asyncio.AbstractEventLoop | None) -> None:
    """Tell the bridge which asyncio loop is the app's (fleetdesk_gui.app does this)."""
    global _loop
    _loop = loop


def _app_loop() -> asyncio.AbstractEventLoop:
    if _loop is not None:
        return _loop
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.get_event_loop_policy().get_event_loop()
