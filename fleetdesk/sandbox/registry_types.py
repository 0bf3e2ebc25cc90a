"""Thing types (the registry's ``thing_types``: :class:`fleetdesk.sandbox.registry.Registry` has one).

As in AWS IoT: a thing may only name an existing, non-deprecated thing type; a type that
things still use cannot be deleted, and only 5 minutes after deprecation in AWS (here: at
once once deprecated).
"""

from __future__ import annotations

import json
import time
import uuid

from fleetdesk.sandbox.awserror import already_exists, invalid
from fleetdesk.sandbox.registry_db import RegistryDb

TYPES_SCHEMA = """
CREATE TABLE IF NOT EXISTS thing_types (
    name TEXT PRIMARY KEY, type_id TEXT NOT NULL, properties TEXT NOT NULL,
    deprecated REAL, created REAL NOT NULL);
"""


class ThingTypeStore:
    """The thing types of a registry: ``Registry.thing_types`` (same database as its things)."""

    def __init__(self, tables: RegistryDb) -> None:
        self._t = tables
        self.db = tables.db

    def _type_row(self, name: str):
        return self._t.row("SELECT name, type_id, properties, deprecated, created FROM thing_types WHERE name=?",
                           name, missing=f"Thing type {name} cannot be found.")

    def check_thing_type(self, name: str) -> None:
        """A thing may use ``name``: it exists and is not deprecated."""
        if self._type_row(name)[3] is not None:
            raise invalid(f"Thing type {name} is deprecated; new things cannot use it")

    def create_thing_type(self, name: str, properties: dict | None = None) -> dict:
        if self._t.one("SELECT 1 FROM thing_types WHERE name=?", name):
            raise already_exists(f"Thing type {name} already exists")
        type_id = str(uuid.uuid4())
        self.db.execute("INSERT INTO thing_types VALUES (?,?,?,?,?)",
                        (name, type_id, json.dumps(properties or {}), None, time.time()))
        return {"thingTypeName": name, "thingTypeArn": self._t.arn("thingtype", name), "thingTypeId": type_id}

    def _type_dict(self, row) -> dict:
        name, type_id, props, deprecated, created = row
        meta = {"deprecated": deprecated is not None, "creationDate": created}
        if deprecated is not None:
            meta["deprecationDate"] = deprecated
        return {"thingTypeName": name, "thingTypeId": type_id, "thingTypeArn": self._t.arn("thingtype", name),
                "thingTypeProperties": json.loads(props), "thingTypeMetadata": meta}

    def describe_thing_type(self, name: str) -> dict:
        return self._type_dict(self._type_row(name))

    def list_thing_types(self, name: str | None = None) -> list[dict]:
        rows = self.db.execute("SELECT name, type_id, properties, deprecated, created FROM thing_types ORDER BY name")
        out = []
        for row in rows:
            if name and row[0] != name:
                continue
            d = self._type_dict(row)
            d.pop("thingTypeId")
            out.append(d)
        return out

    def deprecate_thing_type(self, name: str, undo: bool = False) -> None:
        self._type_row(name)
        self.db.execute("UPDATE thing_types SET deprecated=? WHERE name=?", (None if undo else time.time(), name))

    def delete_thing_type(self, name: str) -> None:
        row = self._type_row(name)
        if row[3] is None:
            raise invalid(f"Thing type {name} must be deprecated before it can be deleted")
        if self._t.one("SELECT 1 FROM things WHERE type=?", name):
            raise invalid(f"Thing type {name} is still used by things")
        self.db.execute("DELETE FROM thing_types WHERE name=?", (name,))
