"""One identity source per :class:`IdentityMode`: how a board's identity is decided.

The station reads what the board carries and what the production DB has on file once
(:class:`BoardFacts`); the source of the station's mode then decides: keep the board's
identity, write one (minted, pooled, claimed, restored), or stop with a question. The steps
they share (backups, keeping, minting, restoring) live on the pipeline
(:class:`fleetdesk.boards.pipeline_identity.IdentitySteps`); a source only orders them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fleetdesk.boards.identity_mode import IdentityMode


@dataclass
class BoardFacts:
    """What is known about the board on the bench before its identity is decided.

    Attributes:
        info: the chip facts the flasher read (chip, mac, revision, flash size).
        mac: its MAC.
        known: the production DB's device row for that MAC, or None.
        board: what its vfs carries (``vfsprobe.BoardIdentity``), None without a vfs partition.
        thing: the thing name it gets (on file, else on the board, else from the template).
    """

    info: dict
    mac: str | None
    known: Any
    board: Any
    thing: str

    @property
    def on_board(self) -> bool:
        return self.board is not None and self.board.found

    @property
    def on_file(self) -> bool:
        return bool(self.known and self.known.certificate_id)


class IdentitySource:
    """Decides one board's identity for a mode; returns the plan to write."""

    mode: IdentityMode

    def prepare(self, pipe, facts: BoardFacts):
        raise NotImplementedError


class FirmwareOnly(IdentitySource):
    """Identity off: the firmware changes, the board's identity does not (its files are
    written back, no cloud call), unless the operator chose a factory reset."""

    mode = IdentityMode.FIRMWARE_ONLY

    def prepare(self, pipe, facts: BoardFacts):
        return pipe._firmware_only(facts.mac)


class Claim(IdentitySource):
    """The claim certificate: no cloud call at flash time, the board claims its identity at first boot."""

    mode = IdentityMode.CLAIM

    def prepare(self, pipe, facts: BoardFacts):
        from fleetdesk.boards.claim import prepare_claim

        pipe._backup_replaced(facts.mac, facts.board)
        return prepare_claim(pipe.ctx, facts.info, facts.thing)


class Pool(IdentitySource):
    """A pre-minted certificate from the offline pool; a board the DB vouches for keeps its own."""

    mode = IdentityMode.POOL

    def prepare(self, pipe, facts: BoardFacts):
        board, known = facts.board, facts.known
        if facts.on_board and facts.on_file and board.certificate_id == known.certificate_id \
                and not pipe.settings.factory_reset:
            return pipe._keep_board_identity(board)  # offline: the DB vouches for it
        pipe._backup_replaced(facts.mac, board)
        return pipe._prepare_from_pool(facts.thing, facts.mac)


class LineCa(IdentitySource):
    """A certificate signed here by the line's CA (no cloud call, no AWS credentials); AWS IoT
    registers it and creates the thing at the board's first connect (JITP). A board the DB
    vouches for keeps its own."""

    mode = IdentityMode.LINE_CA

    def prepare(self, pipe, facts: BoardFacts):
        board, known = facts.board, facts.known
        if facts.on_board and facts.on_file and board.certificate_id == known.certificate_id \
                and not pipe.settings.factory_reset:
            return pipe._keep_board_identity(board)
        pipe._backup_replaced(facts.mac, board)
        return pipe._prepare_from_line_ca(facts.thing)


class Restore(IdentitySource):
    """The identity on file written back (the board lost its flash or had it replaced)."""

    mode = IdentityMode.RESTORE

    def prepare(self, pipe, facts: BoardFacts):
        known = facts.known
        pipe._backup_replaced(facts.mac, facts.board, keep=known.certificate_id if known else None)
        return pipe._restore_files(known, facts.thing)


class Mint(IdentitySource):
    """A thing and certificate per board from the cloud; a board whose certificate is still
    ACTIVE keeps it, one deactivated elsewhere is a question, one on file but missing on the
    board is offered a restore."""

    mode = IdentityMode.MINT

    def prepare(self, pipe, facts: BoardFacts):
        board, known, thing, mac = facts.board, facts.known, facts.thing, facts.mac
        if board is None:  # no vfs partition to read: the key store decides, as before the probe
            return pipe._keep_or_mint(known, thing, mac, None)
        factory_reset = pipe.settings.factory_reset
        if facts.on_board and not factory_reset:
            status = pipe._certificate_status(board.certificate_id)
            if status == "ACTIVE":
                return pipe._keep_board_identity(board)  # identity survives a re-flash
            pipe._hold_if_deactivated_elsewhere(board, status)
            pipe._journal("identity", "note", {"board": board.summary(),
                                               "why": f"the board's certificate is {status or 'unknown'} in this cloud"})
        if facts.on_file and not facts.on_board and not factory_reset:
            pipe._offer_restore(known, thing, board)
        return pipe._keep_or_mint(known, thing, mac, board)


SOURCES: dict[IdentityMode, IdentitySource] = {s.mode: s for s in (FirmwareOnly(), Claim(), Pool(), LineCa(), Restore(),
                                                                    Mint())}


def source_for(mode: IdentityMode) -> IdentitySource:
    """The identity source of `mode`."""
    return SOURCES[mode]
