"""SIGINT/SIGTERM as STOP: a long CLI action is cancelled the way the GUI's STOP button does it.

Inside ``with stop_on_signals(cancel) as got:`` the first SIGINT or SIGTERM calls ``cancel()``
(which returns at once; the work stops at its next block and reports as usual) instead of
killing the process, so result lines are printed, run rows closed and temp dirs removed. A
second signal of either kind raises KeyboardInterrupt. After the block, ``got`` holds the
signal numbers received; exit with :func:`exit_code`.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def stop_on_signals(cancel: Callable[[], None]) -> Iterator[list[int]]:
    got: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield got  # signal handlers can only be set from the main thread
        return

    def handler(signum, _frame) -> None:
        got.append(signum)
        if len(got) > 1:
            raise KeyboardInterrupt
        cancel()

    old = {s: signal.signal(s, handler) for s in SIGNALS}
    try:
        yield got
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def exit_code(got: list[int], default: int) -> int:
    """128 + the first signal (130 for SIGINT, 143 for SIGTERM), else ``default``."""
    return 128 + int(got[0]) if got else default
