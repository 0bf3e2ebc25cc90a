"""Progress bars for long CLI actions (rich), on stderr, only in a terminal.

Piped output, ``--json`` and a non-TTY stderr get no bars at all: stdout stays exactly the
result lines a script reads. One bar per item (a board's port, a pool refill, a build step).
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.progress import TaskID


def wanted(json_output: bool = False) -> bool:
    """Bars only for a person at a terminal: stderr is a TTY and no --json."""
    return not json_output and sys.stderr.isatty()


class Bars:
    """Named bars; ``update(name, ...)`` from any thread. Disabled: every call does nothing."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._progress = None
        self._tasks: dict[str, TaskID] = {}
        self._lock = threading.Lock()
        if enabled:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

            self._progress = Progress(TextColumn("{task.fields[name]:<24}"), BarColumn(), TaskProgressColumn(),
                                      TextColumn("{task.description}"), TimeElapsedColumn(),
                                      console=Console(stderr=True), transient=False,
                                      # stdout lines go above the bars when both are this terminal
                                      redirect_stdout=sys.stdout.isatty(), redirect_stderr=False)

    def update(self, name: str, *, percent: float | None = None, stage: str | None = None,
               done: bool = False) -> None:
        if self._progress is None:
            return
        with self._lock:
            task = self._tasks.get(name)
            if task is None:
                task = self._tasks[name] = self._progress.add_task(stage or "", total=100, name=name)
            fields: dict = {}
            if stage is not None:
                fields["description"] = stage
            if percent is not None:
                fields["completed"] = max(0.0, min(100.0, float(percent)))
            if done:
                fields["completed"] = 100
            self._progress.update(task, **fields)

    def __enter__(self) -> "Bars":
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.stop()


@contextlib.contextmanager
def bars(json_output: bool = False) -> Iterator[Bars]:
    """``with bars(args.json) as b: b.update(name, percent=.., stage=..)``."""
    with Bars(wanted(json_output)) as b:
        yield b
