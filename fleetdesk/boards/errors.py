"""Errors of the flashing station that other layers (CLI, controller, tiles) may catch by name."""

from __future__ import annotations


class StageFailed(Exception):
    """One board's run ends as FAIL in a station stage.

    Args:
        step: the stage it failed in (detect, identity, write, verify, boot, online).
        reason: what happened, as the operator reads it (the result's ``error``).
        kind: a short key of the failure (e.g. "boot", "not-online", "cancelled").
    """

    def __init__(self, step: str, reason: str, kind: str = "") -> None:
        super().__init__(reason)
        self.step, self.reason, self.kind = step, reason, kind
