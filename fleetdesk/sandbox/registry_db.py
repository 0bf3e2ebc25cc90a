"""The registry's SQLite connection and account, shared by :class:`~fleetdesk.sandbox.registry.Registry`
and the stores it has (``policies``, ``thing_types``): one place for ARNs and "this row or
ResourceNotFoundException"."""

from __future__ import annotations

import sqlite3
from typing import Any

from fleetdesk.sandbox.awserror import not_found


class RegistryDb:
    """One registry database of one account.

    Args:
        db: the open SQLite connection (autocommit; ``with db:`` for a transaction).
        region: AWS region used in ARNs.
        account_id: 12-digit account id used in ARNs.
    """

    def __init__(self, db: sqlite3.Connection, region: str, account_id: str) -> None:
        self.db = db
        self.region = region
        self.account_id = account_id

    def arn(self, kind: str, name: str) -> str:
        """``arn:aws:iot:<region>:<account>:<kind>/<name>``."""
        return f"arn:aws:iot:{self.region}:{self.account_id}:{kind}/{name}"

    def one(self, sql: str, *args: Any) -> Any:
        """The first row ``sql`` selects, or None."""
        return self.db.execute(sql, args).fetchone()

    def row(self, sql: str, *args: Any, missing: str) -> Any:
        """The first row ``sql`` selects; none is AWS's ResourceNotFoundException with ``missing``."""
        found = self.one(sql, *args)
        if found is None:
            raise not_found(missing)
        return found
