"""Ledger tests run twice: on a station's own SQLite file and on a fresh database of the
session's throwaway PostgreSQL server (tests/pg_server.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_target(request, tmp_path):
    """A ledger target (a SQLite path or a postgresql:// URL) with nothing in it yet."""
    if request.param == "sqlite":
        return str(tmp_path / "ledger.sqlite3")
    return request.getfixturevalue("pg_server").create_db("ledger")
