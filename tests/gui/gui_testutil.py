"""Helpers for the GUI tests (a module, not a package: tests/gui has no __init__.py so that
the name ``gui`` always means the app's package)."""

from __future__ import annotations

import asyncio
import time


async def until(predicate, timeout: float = 30.0, interval: float = 0.02, what="condition"):
    """Await until ``predicate()`` is true (asyncio side of qtbot.waitUntil).

    ``what`` names the condition; a callable is called at the timeout, so the message shows the
    state the test gave up on (an f-string would show the state when the wait began).
    """
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what() if callable(what) else what}")
        await asyncio.sleep(interval)
