"""What a station step may use of the board's run, and nothing more."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass
class PipelineContext:
    """One board's run as its steps (identity sources, claim) see it.

    Attributes:
        settings: the StationSettings of this run (with the board's overrides).
        plan: the bundle's FlashPlan, before any identity is added.
        db: the production ledger.
        cloud: the cloud target (None for firmware-only runs).
        result: the BoardResult being filled in.
        journal: ``journal(step, status, detail="", **fields)``: one row of the run's journal.
        emit: ``emit(**event)``: an event for the tile/CLI (stage, percent, log, ...).
        cancel: set when the operator pressed STOP.
        claim: claim mode: the station's claim credentials used for this board.
        claim_pop: claim mode: the proof-of-possession written into this board.
    """

    settings: Any
    plan: Any
    db: Any
    cloud: Any
    result: Any
    journal: Callable[..., None]
    emit: Callable[..., None]
    cancel: threading.Event
    claim: Any = None
    claim_pop: str | None = None
