"""A stall watch for the sandbox's event loop (a diagnostic; off unless ``FLEETDESK_SANDBOX_STALL_S`` is set).

Everything the sandbox serves (the HTTPS control plane, the mTLS and WSS fronts, the services)
shares one asyncio loop, so one synchronous stretch on it delays every client. With
``FLEETDESK_SANDBOX_STALL_S=0.5`` a watcher thread prints to stderr (the sandbox log) the
loop thread's stack as soon as the loop has not run for 0.5 s, again every 5 s while the
stall lasts, and the stall's length when the loop runs again. asyncio's own debug mode
(``PYTHONASYNCIODEBUG``) names only the slow callback, not the line it is stuck on, and
slows every call; this costs one timer callback per ``threshold / 4``.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
import traceback
from typing import TextIO

ENV = "FLEETDESK_SANDBOX_STALL_S"
REPEAT_S = 5.0


class LoopWatch:
    """Report stalls of the running loop longer than ``threshold_s`` (start it on the loop's thread).

    Args:
        threshold_s: a loop that has not run for this long is stalled.
        out: where reports go (default stderr, read at report time).
    """

    def __init__(self, threshold_s: float, out: TextIO | None = None) -> None:
        self.threshold_s = threshold_s
        self.out = out
        self.stalls = 0
        self._tick = time.monotonic()
        self._stop = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._thread: threading.Thread | None = None
        self._reported_at = 0.0

    def _print(self, text: str) -> None:
        out = self.out or sys.stderr
        out.write(text)
        out.flush()

    def start(self) -> LoopWatch:
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._tick = time.monotonic()
        self._loop.call_soon(self._beat)
        self._thread = threading.Thread(target=self._watch, name="sandbox-loop-watch", daemon=True)
        self._thread.start()
        return self

    def _beat(self) -> None:
        now = time.monotonic()
        late = now - self._tick
        if self._reported_at:
            self._print(f"sandbox: event loop stall ended: blocked for {late:.2f} s\n")
            self._reported_at = 0.0
        self._tick = now
        if not self._stop.is_set() and self._loop is not None:
            self._loop.call_later(self.threshold_s / 4, self._beat)

    def _watch(self) -> None:
        while not self._stop.wait(self.threshold_s / 4):
            lag = time.monotonic() - self._tick
            if lag <= self.threshold_s:
                continue
            now = time.monotonic()
            if self._reported_at and now - self._reported_at < REPEAT_S:
                continue
            frame = sys._current_frames().get(self._loop_thread)
            stack = "".join(traceback.format_stack(frame)) if frame is not None else "  (no frame)\n"
            if not self._reported_at:
                self.stalls += 1
            self._reported_at = now
            self._print(f"sandbox: event loop stalled for {lag:.2f} s so far, in:\n{stack}")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(1.0)


def from_env() -> LoopWatch | None:
    """A started :class:`LoopWatch` if ``FLEETDESK_SANDBOX_STALL_S`` is a positive number of seconds, else None."""
    raw = os.environ.get(ENV, "").strip()
    if not raw:
        return None
    try:
        threshold = float(raw)
    except ValueError:
        print(f"sandbox: ignoring {ENV}={raw!r}: not a number of seconds (e.g. 0.5)", file=sys.stderr)
        return None
    if threshold <= 0:
        return None
    return LoopWatch(threshold).start()
