"""The flash events, typed: what the esptool worker process reports, and what a board's
pipeline reports to its tile and the CLI.

Two layers:

* **Worker events** (:data:`WorkerEvent`): one JSON line each on the worker's stdout
  (``{"event": "stage", "stage": "writing"}``), written with :func:`to_line` in the worker
  process and read back with :func:`from_line` by the host (``fleetdesk.boards.flasher``).
  The wire shape is the worker's documented protocol (see ``fleetdesk.boards.worker``).
* **Board events** (:class:`BoardEvent`): what ``BoardPipeline`` passes to ``on_event(port, ev)``:
  the station's stage names (detect, identity, write, verify, boot, online, done), progress,
  a log line, the chip facts, the online countdown and the final result. :func:`board_event`
  is the one mapping from the first to the second; ``TileState.apply`` reads the second.

Example::

    line = to_line(Progress(bytes=4096, total=8192, percent=50))   # in the worker
    ev = from_line(line)                                           # on the host: Progress(...)
    board_event(ev)                                                # BoardEvent(percent=50, ...)
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Callable, TypeVar, Union, dataclass_transform

# esptool's stages (the worker's words) as the station's steps
WORKER_STAGE = {"connecting": "detect", "erasing": "write", "writing": "write", "verifying": "verify",
                "booting": "boot"}


_BY_NAME: dict[str, type] = {}  # wire name -> event class
_NAME_OF: dict[type, str] = {}


_T = TypeVar("_T", bound=type)


@dataclass_transform(frozen_default=True)
def _event(name: str) -> Callable[[_T], _T]:
    """Declare a worker event: a frozen dataclass known on the wire as ``name``."""

    def make(cls: _T) -> _T:
        dataclass(frozen=True)(cls)  # in place (no slots): the same class
        _BY_NAME[name], _NAME_OF[cls] = cls, name
        return cls

    return make


@_event("stage")
class Stage:
    """esptool moved on: connecting, erasing, writing, verifying or booting."""

    stage: str


@_event("progress")
class Progress:
    """Bytes written of the whole plan (all parts together)."""

    bytes: int
    total: int
    percent: int


@_event("log")
class Log:
    """One line esptool (or the host, on a baud fallback) printed."""

    text: str


@_event("info")
class Info:
    """The chip's facts (chip, mac, revision, features, crystal, flash id and size...)."""

    facts: dict = field(default_factory=dict)

    @property
    def chip(self) -> str | None:
        return self.facts.get("chip")

    @property
    def mac(self) -> str | None:
        return self.facts.get("mac")


@_event("ready")
class Ready(Info):
    """Connected and checked; the worker waits for the parts (the host mints from the MAC)."""



@_event("identity")
class Identity:
    """What the board's vfs carries (names and digests only: the files go to a 0600 ``path``).

    ``error`` is True when the probe itself failed (``reason`` says why)."""

    found: bool
    reason: str = ""
    thing: str | None = None
    product: str | None = None
    certificate_id: str | None = None
    bytes_read: int = 0
    reads: int = 0
    path: str | None = None
    ms: int | None = None
    error: bool = False


@_event("fallback")
class Fallback:
    """The host retries at a lower baud rate after a failure (host-side, never on the wire)."""

    baud: int
    reason: str = ""


@_event("result")
class Result:
    """The job's end (always the worker's last line)."""

    ok: bool
    written: bool = False
    kind: str = ""
    error: str = ""
    info: dict = field(default_factory=dict)
    last_lines: list = field(default_factory=list)
    exception: str = ""


WorkerEvent = Union[Stage, Progress, Log, Info, Ready, Identity, Fallback, Result]
_FLAT = (Info, Ready)  # their facts are the line's own fields


def to_json(ev: WorkerEvent) -> dict:
    """The wire dict: ``{"event": name, **fields}`` (an Info's facts flat, as the worker always sent)."""
    fields = dict(ev.facts) if isinstance(ev, _FLAT) else dataclasses.asdict(ev)
    return {"event": _NAME_OF[type(ev)], **fields}


def to_line(ev: WorkerEvent) -> str:
    """One JSON line (no newline) for the worker's stdout."""
    return json.dumps(to_json(ev))


def from_json(d: dict) -> WorkerEvent | None:
    """The event of a wire dict; None for an unknown event name (a newer worker: skipped).

    Fields this version does not know are dropped, missing optional ones take their defaults.
    """
    cls = _BY_NAME.get(d.get("event", ""))
    if cls is None:
        return None
    fields = {k: v for k, v in d.items() if k != "event"}
    if cls in _FLAT:
        return cls(facts=fields)
    known = {f.name for f in dataclasses.fields(cls)}
    try:
        return cls(**{k: v for k, v in fields.items() if k in known})
    except TypeError:  # a required field missing: not an event this version can read
        return None


def from_line(line: str) -> WorkerEvent | None:
    """The event of one stdout line; None for a line that is not one (stray output)."""
    try:
        d = json.loads(line)
    except ValueError:
        return None
    return from_json(d) if isinstance(d, dict) else None


@dataclass(frozen=True)
class BoardEvent:
    """What a board's pipeline reports to its tile and the CLI; every field is optional.

    Attributes:
        stage: the station's step (detect, identity, write, verify, boot, online, done).
        state: "running" at the start, the result ("PASS"/"FAIL") with ``stage="done"``.
        percent, bytes, total: write progress.
        log: a line for the tile's details.
        info: the chip's facts (chip, mac, ...).
        fallback: the flash fell back to a lower baud rate.
        waiting_s: seconds left for the board to come online (the countdown).
        result: the BoardResult as JSON, with ``stage="done"``.
    """

    stage: str | None = None
    state: str | None = None
    percent: int | None = None
    bytes: int | None = None
    total: int | None = None
    log: str | None = None
    info: dict | None = None
    fallback: bool = False
    waiting_s: int | None = None
    result: dict | None = None

    @property
    def chip(self) -> str | None:
        return (self.info or {}).get("chip")

    @property
    def mac(self) -> str | None:
        return (self.info or {}).get("mac")


def board_event(ev: WorkerEvent) -> BoardEvent | None:
    """A worker event as the tile sees it (None: nothing to show, e.g. ``identity``/``result``)."""
    if isinstance(ev, Stage):
        return BoardEvent(stage=WORKER_STAGE.get(ev.stage, ev.stage))
    if isinstance(ev, Progress):
        return BoardEvent(percent=ev.percent, bytes=ev.bytes, total=ev.total)
    if isinstance(ev, Log):
        return BoardEvent(log=ev.text)
    if isinstance(ev, Info) and not isinstance(ev, Ready):
        return BoardEvent(info=dict(ev.facts))
    if isinstance(ev, Fallback):
        return BoardEvent(log=f"fell back to {ev.baud} baud", fallback=True)
    return None

