"""Opening one of the sandbox's own SQLite files (autocommit, WAL, used from any thread).

A file that is not a usable database raises :class:`~fleetdesk.errors.SandboxError` naming the
file and what to do about it; nothing is deleted.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from fleetdesk.errors import SandboxError


def open_store(path: Path, schema: str, synchronous: str, what: str, fix: str) -> sqlite3.Connection:
    """Open ``path`` with ``PRAGMA synchronous=<synchronous>`` and run ``schema`` on it.

    Raises:
        SandboxError: "<what> <path> is unusable (<sqlite's reason>)", with ``fix`` as the hint.
    """
    try:
        db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={synchronous}")
        db.executescript(schema)
    except sqlite3.DatabaseError as exc:
        raise SandboxError(f"{what} {path} is unusable ({exc})", fix) from exc
    return db
