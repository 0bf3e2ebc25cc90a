"""The fleet index on disk: one SQLite file, ``<state_dir>/fleet_index.sqlite``.

``things`` holds each thing's search document (what SearchIndex returns), ``fields`` its
flattened searchable values (``thingName``, ``attributes.model``, ``shadow.reported.temp``,
``shadow.name.cfg.reported.x``, ``thingGroupNames`` (one row per group),
``connectivity.connected``...), in covering indexes by (field, lowered value, thing), (field,
number, thing) and (thing, field): an inverted index, so a term is one index range and a query is
one SQL statement (:mod:`index_query`); a page is a keyset scan by thing name. Aggregations first
put the query's matches in a temporary table (once per query and index version: the tiles' three
calls share it), then read the field's rows of those things only, so a narrow filter costs what
its matches cost, not what the fleet costs.
Hand-written: the sandbox's stand-in for AWS's managed index (emulator side).
"""

from __future__ import annotations

import base64
import json
import math
from pathlib import Path
from typing import Iterable

from fleetdesk.sandbox.sqlite_file import open_store
from fleetdesk.sandbox.index_query import _NUMBER, query_sql

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS things (name TEXT PRIMARY KEY, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS fields (thing TEXT NOT NULL, field TEXT NOT NULL, lv TEXT NOT NULL, num REAL,
                                   raw TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS fields_value_thing ON fields (field, lv, thing);
CREATE INDEX IF NOT EXISTS fields_num_thing ON fields (field, num, thing);
CREATE INDEX IF NOT EXISTS fields_thing_field ON fields (thing, field);
CREATE INDEX IF NOT EXISTS fields_lv_thing ON fields (lv, thing);
DROP INDEX IF EXISTS fields_by_value;
DROP INDEX IF EXISTS fields_by_num;
DROP INDEX IF EXISTS fields_by_thing;
DROP INDEX IF EXISTS fields_by_lv;
CREATE TABLE IF NOT EXISTS dynamic_groups (name TEXT PRIMARY KEY, query TEXT NOT NULL, index_name TEXT NOT NULL,
                                           query_version TEXT NOT NULL);
"""


_FIELD_INDEXES = [stmt.strip() for stmt in SCHEMA.split(";") if stmt.strip().startswith("CREATE INDEX")]


def flatten(prefix: str, value, out: list[tuple[str, object]]) -> None:
    """(field, leaf value) pairs of a JSON value (lists repeat the field)."""
    if isinstance(value, dict):
        for k, v in value.items():
            flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    elif isinstance(value, list):
        for v in value:
            flatten(prefix, v, out)
    elif value is not None:
        out.append((prefix, value))


def _row(thing: str, field: str, value) -> tuple:
    if isinstance(value, bool):
        text = "true" if value else "false"
        num = None
    elif isinstance(value, (int, float)):
        text = repr(value) if isinstance(value, float) else str(value)
        num = float(value) if math.isfinite(float(value)) else None
    else:
        text = str(value)
        num = float(text) if _NUMBER.match(text) else None
    return (thing, field, text.lower(), num, text)


def encode_token(name: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"after": name}).encode()).decode()


def decode_token(token: str) -> str:
    try:
        return json.loads(base64.urlsafe_b64decode(token.encode()))["after"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"invalid nextToken {token[:40]!r}") from exc


class IndexStore:
    """Search documents and their searchable fields.

    Args:
        path: the SQLite file (created if missing).
    """

    def __init__(self, path: Path) -> None:
        # synchronous=OFF: an index, rebuilt from the registry if ever unclean
        self.db = open_store(path, SCHEMA, "OFF", "the fleet index",
                             "delete it: the sandbox rebuilds it from the registry and shadows")
        self.db.execute("CREATE TEMP TABLE IF NOT EXISTS matched (name TEXT PRIMARY KEY) WITHOUT ROWID")
        self._version = 0          # bumped by every write: what the matches below were computed against
        self._matched: tuple[str, int, int] | None = None  # (query, version, count) held in temp.matched
        self._total: tuple[int, int] | None = None         # (version, number of things)

    def close(self) -> None:
        self.db.close()

    # -- meta --------------------------------------------------------------------------
    def get_meta(self, key: str, default: str | None = None) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else default

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT INTO meta VALUES (?,?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                        (key, value))

    # -- writing -----------------------------------------------------------------------
    def put(self, doc: dict, fields: list[tuple[str, object]]) -> None:
        """Replace one thing's document and fields."""
        name = doc["thingName"]
        rows = [_row(name, f, v) for f, v in fields]
        self._version += 1
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute("DELETE FROM fields WHERE thing=?", (name,))
            self.db.executemany("INSERT INTO fields VALUES (?,?,?,?,?)", rows)
            self.db.execute("INSERT INTO things VALUES (?,?) ON CONFLICT(name) DO UPDATE SET doc=excluded.doc",
                            (name, json.dumps(doc, separators=(",", ":"))))

    def put_many(self, items: list[tuple[dict, list]]) -> None:
        """Replace many documents in one transaction. Only the field rows that changed are
        rewritten (a reading changes one or two of a thing's dozen rows, each in four indexes)."""
        self._version += 1
        with self.db:
            self.db.execute("BEGIN")
            for doc, fields in items:
                name = doc["thingName"]
                have: dict[tuple, list[int]] = {}
                for rowid, field, raw, num in self.db.execute(
                        "SELECT rowid, field, raw, num FROM fields WHERE thing=?", (name,)):
                    have.setdefault((field, raw, num), []).append(rowid)
                new_rows = []
                for f, v in fields:
                    row = _row(name, f, v)
                    ids = have.get((row[1], row[4], row[3]))
                    if ids:
                        ids.pop()
                    else:
                        new_rows.append(row)
                stale = [(i,) for ids in have.values() for i in ids]
                if stale:
                    self.db.executemany("DELETE FROM fields WHERE rowid=?", stale)
                if new_rows:
                    self.db.executemany("INSERT INTO fields VALUES (?,?,?,?,?)", new_rows)
                self.db.execute("INSERT INTO things VALUES (?,?) ON CONFLICT(name) DO UPDATE SET doc=excluded.doc",
                                (name, json.dumps(doc, separators=(",", ":"))))

    def replace_all(self, items: Iterable[tuple[dict, list]]) -> int:
        """Make the index exactly ``items`` (a rebuild), in one transaction: the field rows go in
        first and their four indexes are built after, several times faster than keeping them up to
        date row by row. Returns the number of documents."""
        self._version += 1
        n = 0
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute("DELETE FROM fields")
            self.db.execute("DELETE FROM things")
            for stmt in _FIELD_INDEXES:
                self.db.execute("DROP INDEX IF EXISTS " + stmt.split(" ON ")[0].split()[-1])
            rows: list[tuple] = []
            docs: list[tuple[str, str]] = []
            for doc, fields in items:
                name = doc["thingName"]
                rows += [_row(name, f, v) for f, v in fields]
                docs.append((name, json.dumps(doc, separators=(",", ":"))))
                n += 1
                if len(rows) >= 50_000:
                    self.db.executemany("INSERT INTO fields VALUES (?,?,?,?,?)", rows)
                    self.db.executemany("INSERT INTO things VALUES (?,?)", docs)
                    rows, docs = [], []
            self.db.executemany("INSERT INTO fields VALUES (?,?,?,?,?)", rows)
            self.db.executemany("INSERT INTO things VALUES (?,?)", docs)
            for stmt in _FIELD_INDEXES:
                self.db.execute(stmt)
        return n

    def delete(self, name: str) -> None:
        self._version += 1
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute("DELETE FROM fields WHERE thing=?", (name,))
            self.db.execute("DELETE FROM things WHERE name=?", (name,))

    def clear(self) -> None:
        self._version += 1
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute("DELETE FROM fields")
            self.db.execute("DELETE FROM things")

    def doc(self, name: str) -> dict | None:
        row = self.db.execute("SELECT doc FROM things WHERE name=?", (name,)).fetchone()
        return json.loads(row[0]) if row else None

    def names_with(self, field: str, value: str) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT DISTINCT thing FROM fields WHERE field=? AND lv=?",
                                              (field, value.lower()))]

    # -- reading -----------------------------------------------------------------------
    def search(self, query: str, max_results: int, token: str | None) -> tuple[list[dict], str | None]:
        """One page of matching documents by thing name. Raises QueryError, ValueError (token)."""
        where, args = query_sql(query)
        after = decode_token(token) if token else ""
        rows = self.db.execute(f"SELECT name, doc FROM things WHERE name > ? AND {where} ORDER BY name LIMIT ?",
                               [after, *args, max_results + 1]).fetchall()
        more = len(rows) > max_results
        rows = rows[:max_results]
        return [json.loads(r[1]) for r in rows], (encode_token(rows[-1][0]) if more and rows else None)

    def matches(self, query: str, name: str) -> bool:
        where, args = query_sql(query)
        return self.db.execute(f"SELECT 1 FROM things WHERE name=? AND {where}", [name, *args]).fetchone() is not None

    def matching_names(self, query: str) -> list[str]:
        where, args = query_sql(query)
        return [r[0] for r in self.db.execute(f"SELECT name FROM things WHERE {where} ORDER BY name", args)]

    def count(self, query: str) -> int:
        if query_sql(query)[0] == "1":
            return self._things()
        return self._match(query)

    def _things(self) -> int:
        if self._total is None or self._total[0] != self._version:
            self._total = (self._version, self.db.execute("SELECT count(*) FROM things").fetchone()[0])
        return self._total[1]

    def _match(self, query: str) -> int:
        """Put the query's matching names in ``temp.matched`` (unless they are there for this index
        version already); returns how many there are."""
        if self._matched is not None and self._matched[:2] == (query, self._version):
            return self._matched[2]
        where, args = query_sql(query)
        self.db.execute("DELETE FROM temp.matched")
        n = self.db.execute(f"INSERT INTO temp.matched SELECT name FROM things WHERE {where}", args).rowcount
        self._matched = (query, self._version, n)
        return n

    def _values(self, query: str, field: str, select: str, tail: str = "", extra: list | None = None):
        where, _args = query_sql(query)
        if where == "1":  # "*": every thing (the unfiltered Fleet page's tiles): no membership test
            return self.db.execute(f"SELECT {select} FROM fields WHERE field=? {tail}", [field, *(extra or [])])
        n = self._match(query)
        if n * 8 < self._things():  # a narrow filter: visit the field's row of each match
            sql = (f"SELECT {select} FROM temp.matched AS m CROSS JOIN fields INDEXED BY fields_thing_field "
                   f"ON fields.thing = m.name "
                   f"WHERE fields.field=? {tail}")
        else:  # most things match: scan the field's rows, test membership in the matches
            sql = f"SELECT {select} FROM fields WHERE field=? AND thing IN temp.matched {tail}"
        return self.db.execute(sql, [field, *(extra or [])])

    def numeric_stats(self, query: str, field: str) -> dict:
        """count, sum, min, max, sum of squares of the field's numeric values among matches."""
        n, s, lo, hi, sq = self._values(query, field, "count(num), sum(num), min(num), max(num), sum(num*num)",
                                        "AND num IS NOT NULL").fetchone()
        return {"count": n or 0, "sum": s, "minimum": lo, "maximum": hi, "sumOfSquares": sq}

    def value_count(self, query: str, field: str) -> int:
        return self._values(query, field, "count(*)").fetchone()[0]

    def cardinality(self, query: str, field: str) -> int:
        return self._values(query, field, "count(DISTINCT lv)").fetchone()[0]

    def buckets(self, query: str, field: str, max_buckets: int) -> list[dict]:
        rows = self._values(query, field, "min(raw), count(DISTINCT thing) AS c",
                            "GROUP BY lv ORDER BY c DESC, lv LIMIT ?", [max_buckets]).fetchall()
        return [{"keyValue": r[0], "count": r[1]} for r in rows]

    # -- dynamic groups ----------------------------------------------------------------
    def dynamic_groups(self) -> dict[str, str]:
        return {r[0]: r[1] for r in self.db.execute("SELECT name, query FROM dynamic_groups")}

    def dynamic_group(self, name: str) -> dict | None:
        row = self.db.execute("SELECT query, index_name, query_version FROM dynamic_groups WHERE name=?",
                              (name,)).fetchone()
        return {"queryString": row[0], "indexName": row[1], "queryVersion": row[2]} if row else None

    def put_dynamic_group(self, name: str, query: str, index_name: str, query_version: str) -> None:
        self.db.execute("INSERT INTO dynamic_groups VALUES (?,?,?,?) ON CONFLICT(name) DO UPDATE SET "
                        "query=excluded.query, index_name=excluded.index_name, query_version=excluded.query_version",
                        (name, query, index_name, query_version))

    def delete_dynamic_group(self, name: str) -> None:
        self.db.execute("DELETE FROM dynamic_groups WHERE name=?", (name,))
