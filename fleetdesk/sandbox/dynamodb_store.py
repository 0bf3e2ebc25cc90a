"""The sandbox's DynamoDB: tables and items in one SQLite file, ``<state_dir>/dynamodb.sqlite``.

Hand-written (the emulator side): the subset Fleetdesk's telemetry rule and history need —
CreateTable/DescribeTable/ListTables/DeleteTable, PutItem/GetItem, BatchWriteItem, Query with a
key condition (``=`` on the partition key; ``= < <= > >= BETWEEN begins_with`` on the sort key),
``ScanIndexForward``, ``Limit``, ``ExclusiveStartKey``/``LastEvaluatedKey`` and the 1 MB page
limit, and Time to Live (expired items are deleted by a sweep, and, as on AWS, may show until
then). Items keep DynamoDB's typed attribute values (``{"S": ...}``, ``{"N": "21.5"}``) as JSON.
Errors are :class:`DynamoError` with DynamoDB's codes (ValidationException,
ResourceNotFoundException, ResourceInUseException).
"""

from __future__ import annotations

import json
import re
import time
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from fleetdesk.sandbox.sqlite_file import open_store

MAX_ITEM_BYTES = 400 * 1024
MAX_PAGE_BYTES = 1024 * 1024
MAX_BATCH_WRITE = 25
TABLE_NAME_RE = re.compile(r"^[a-zA-Z0-9_.-]{3,255}$")

SCHEMA = """
CREATE TABLE IF NOT EXISTS ddb_tables (name TEXT PRIMARY KEY, spec TEXT NOT NULL, created REAL NOT NULL,
                                       ttl_attr TEXT);
CREATE TABLE IF NOT EXISTS ddb_items (tbl TEXT NOT NULL, pk TEXT NOT NULL, sk_s TEXT NOT NULL DEFAULT '',
                                      sk_n REAL, item TEXT NOT NULL, size INTEGER NOT NULL, expires REAL,
                                      PRIMARY KEY (tbl, pk, sk_s));
CREATE INDEX IF NOT EXISTS ddb_items_by_num ON ddb_items (tbl, pk, sk_n);
CREATE INDEX IF NOT EXISTS ddb_items_by_expiry ON ddb_items (tbl, expires) WHERE expires IS NOT NULL;
"""


class DynamoError(Exception):
    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


def validation(message: str) -> DynamoError:
    return DynamoError("ValidationException", message)


def _not_found() -> DynamoError:
    return DynamoError("ResourceNotFoundException", "Requested resource not found")


def _scalar(value: dict, type_: str, name: str):
    """The key attribute's (sortable) value; ValidationException for a wrong type."""
    if not isinstance(value, dict) or len(value) != 1:
        raise validation(f"One or more parameter values were invalid: key attribute {name} is not an attribute value")
    (t, v), = value.items()
    if t != type_:
        raise validation(f"One or more parameter values were invalid: Type mismatch for key {name} expected: "
                         f"{type_} actual: {t}")
    if t == "N":
        try:
            return float(Decimal(v))
        except (InvalidOperation, TypeError, ValueError):
            raise validation(f"The parameter cannot be converted to a numeric value: {v!r}") from None
    if not isinstance(v, str) or (t == "S" and v == ""):
        raise validation(f"One or more parameter values are not valid. The AttributeValue for a key attribute "
                         f"cannot contain an empty string value. Key: {name}")
    return v


class DynamoStore:
    """Tables and items. Used from the sandbox's event-loop thread."""

    def __init__(self, path: Path, region: str, account_id: str, clock=time.time) -> None:
        self.region, self.account_id, self.clock = region, account_id, clock
        self.db = open_store(path, SCHEMA, "NORMAL", "the sandbox's DynamoDB file",
                             "restore it from a backup, or move it away to start with no tables")

    def close(self) -> None:
        self.db.close()

    # -- tables ------------------------------------------------------------------------
    def _spec(self, name: str) -> dict:
        row = self.db.execute("SELECT spec, created, ttl_attr FROM ddb_tables WHERE name=?", (name,)).fetchone()
        if row is None:
            raise _not_found()
        spec = json.loads(row[0])
        spec["_created"], spec["_ttl"] = row[1], row[2]
        return spec

    def _keys(self, spec: dict) -> tuple[tuple[str, str], tuple[str, str] | None]:
        types = {a["AttributeName"]: a["AttributeType"] for a in spec["AttributeDefinitions"]}
        hash_key = next(k["AttributeName"] for k in spec["KeySchema"] if k["KeyType"] == "HASH")
        range_key = next((k["AttributeName"] for k in spec["KeySchema"] if k["KeyType"] == "RANGE"), None)
        return (hash_key, types[hash_key]), ((range_key, types[range_key]) if range_key else None)

    def create_table(self, p: dict) -> dict:
        name = p.get("TableName") or ""
        if not TABLE_NAME_RE.match(name):
            raise validation("TableName must be 3-255 characters of [a-zA-Z0-9_.-]")
        schema, defs = p.get("KeySchema") or [], p.get("AttributeDefinitions") or []
        kinds = [k.get("KeyType") for k in schema]
        if kinds not in (["HASH"], ["HASH", "RANGE"]):
            raise validation("KeySchema must be one HASH key, optionally followed by one RANGE key")
        types = {a.get("AttributeName"): a.get("AttributeType") for a in defs}
        for k in schema:
            if types.get(k["AttributeName"]) not in ("S", "N", "B"):
                raise validation(f"One or more parameter values were invalid: Some index key attributes are not "
                                 f"defined in AttributeDefinitions. Keys: [{k['AttributeName']}]")
        if len(types) != len(schema):
            raise validation("One or more parameter values were invalid: Number of attributes in KeySchema does not "
                             "exactly match number of attributes defined in AttributeDefinitions")
        billing = p.get("BillingMode") or "PROVISIONED"
        if billing == "PROVISIONED" and not p.get("ProvisionedThroughput"):
            raise validation("One or more parameter values were invalid: ReadCapacityUnits and WriteCapacityUnits "
                             "must both be specified when BillingMode is PROVISIONED")
        if self.db.execute("SELECT 1 FROM ddb_tables WHERE name=?", (name,)).fetchone():
            raise DynamoError("ResourceInUseException", f"Table already exists: {name}")
        spec = {"TableName": name, "KeySchema": schema, "AttributeDefinitions": defs, "BillingMode": billing,
                "ProvisionedThroughput": p.get("ProvisionedThroughput") or {"ReadCapacityUnits": 0,
                                                                             "WriteCapacityUnits": 0}}
        self.db.execute("INSERT INTO ddb_tables VALUES (?,?,?,NULL)", (name, json.dumps(spec), self.clock()))
        return self.describe_table(name)

    def describe_table(self, name: str) -> dict:
        spec = self._spec(name)
        count, size = self.db.execute("SELECT count(*), coalesce(sum(size),0) FROM ddb_items WHERE tbl=?",
                                      (name,)).fetchone()
        pt = dict(spec["ProvisionedThroughput"], NumberOfDecreasesToday=0)
        return {"TableName": name, "TableStatus": "ACTIVE", "KeySchema": spec["KeySchema"],
                "AttributeDefinitions": spec["AttributeDefinitions"], "CreationDateTime": spec["_created"],
                "ItemCount": count, "TableSizeBytes": size, "ProvisionedThroughput": pt,
                "BillingModeSummary": {"BillingMode": spec["BillingMode"]},
                "TableArn": f"arn:aws:dynamodb:{self.region}:{self.account_id}:table/{name}",
                "TableId": name}

    def list_tables(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT name FROM ddb_tables ORDER BY name")]

    def delete_table(self, name: str) -> dict:
        desc = self.describe_table(name)
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute("DELETE FROM ddb_items WHERE tbl=?", (name,))
            self.db.execute("DELETE FROM ddb_tables WHERE name=?", (name,))
        return dict(desc, TableStatus="DELETING")

    def update_ttl(self, name: str, spec: dict) -> dict:
        self._spec(name)
        attr = spec.get("AttributeName") or ""
        if not attr:
            raise validation("TimeToLiveSpecification.AttributeName is required")
        enabled = bool(spec.get("Enabled"))
        current = self._spec(name)["_ttl"]
        if enabled and current == attr or not enabled and current is None:
            raise validation(f"TimeToLive is already {'enabled' if enabled else 'disabled'}")
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute("UPDATE ddb_tables SET ttl_attr=? WHERE name=?", (attr if enabled else None, name))
            rows = self.db.execute("SELECT pk, sk_s, item FROM ddb_items WHERE tbl=?", (name,)).fetchall()
            for pk, sk, item in rows:
                self.db.execute("UPDATE ddb_items SET expires=? WHERE tbl=? AND pk=? AND sk_s=?",
                                (self._expiry(json.loads(item), attr if enabled else None), name, pk, sk))
        return {"Enabled": enabled, "AttributeName": attr}

    def describe_ttl(self, name: str) -> dict:
        attr = self._spec(name)["_ttl"]
        return {"TimeToLiveStatus": "ENABLED", "AttributeName": attr} if attr else {"TimeToLiveStatus": "DISABLED"}

    @staticmethod
    def _expiry(item: dict, attr: str | None) -> float | None:
        value = item.get(attr) if attr else None
        if isinstance(value, dict) and "N" in value:
            try:
                return float(Decimal(value["N"]))
            except (InvalidOperation, ValueError):
                return None
        return None  # AWS: a TTL attribute that is not a Number is ignored

    def sweep_expired(self) -> int:
        """Delete items whose TTL has passed; the number deleted."""
        return self.db.execute("DELETE FROM ddb_items WHERE expires IS NOT NULL AND expires < ?",
                               (self.clock(),)).rowcount

    # -- items -------------------------------------------------------------------------
    def _key_of(self, spec: dict, item: dict, what: str = "item") -> tuple[str, str, float | None]:
        (hk, ht), rng = self._keys(spec)
        if hk not in item:
            raise validation(f"One or more parameter values were invalid: Missing the key {hk} in the {what}")
        pk = f"{ht}:{_scalar(item[hk], ht, hk)}"
        if rng is None:
            return pk, "", None
        rk, rt = rng
        if rk not in item:
            raise validation(f"One or more parameter values were invalid: Missing the key {rk} in the {what}")
        v = _scalar(item[rk], rt, rk)
        return (pk, "", v) if rt == "N" else (pk, v, None)

    def put_item(self, name: str, item: dict) -> None:
        spec = self._spec(name)
        if not isinstance(item, dict) or not item:
            raise validation("Item must be a non-empty map of attribute values")
        text = json.dumps(item, separators=(",", ":"))
        if len(text.encode()) > MAX_ITEM_BYTES:
            raise validation("Item size has exceeded the maximum allowed size")
        pk, sk_s, sk_n = self._key_of(spec, item)
        if sk_n is not None:
            sk_s = repr(sk_n)
        self.db.execute("INSERT INTO ddb_items VALUES (?,?,?,?,?,?,?) ON CONFLICT(tbl, pk, sk_s) DO UPDATE SET "
                        "item=excluded.item, size=excluded.size, expires=excluded.expires, sk_n=excluded.sk_n",
                        (name, pk, sk_s, sk_n, text, len(text), self._expiry(item, spec["_ttl"])))

    def put_items(self, items: list[tuple[str, dict]]) -> list[DynamoError | None]:
        """Put many items in one transaction (the rules engine's writes of one loop turn);
        for each, None or the DynamoError that refused it (the others are still written)."""
        out: list[DynamoError | None] = []
        with self.db:
            self.db.execute("BEGIN")
            for table, item in items:
                try:
                    self.put_item(table, item)
                    out.append(None)
                except DynamoError as exc:
                    out.append(exc)
        return out

    def get_item(self, name: str, key: dict) -> dict | None:
        spec = self._spec(name)
        if len(key) != len(spec["KeySchema"]):
            raise validation("The provided key element does not match the schema")
        pk, sk_s, sk_n = self._key_of(spec, key, "key")
        if sk_n is not None:
            sk_s = repr(sk_n)
        row = self.db.execute("SELECT item FROM ddb_items WHERE tbl=? AND pk=? AND sk_s=?", (name, pk, sk_s)).fetchone()
        return json.loads(row[0]) if row else None

    def delete_item(self, name: str, key: dict) -> None:
        spec = self._spec(name)
        pk, sk_s, sk_n = self._key_of(spec, key, "key")
        if sk_n is not None:
            sk_s = repr(sk_n)
        self.db.execute("DELETE FROM ddb_items WHERE tbl=? AND pk=? AND sk_s=?", (name, pk, sk_s))

    def batch_write(self, requests: dict) -> None:
        total = sum(len(v or []) for v in requests.values())
        if not 1 <= total <= MAX_BATCH_WRITE:
            raise validation("Too many items requested for the BatchWriteItem call" if total else
                             "1 validation error detected: RequestItems must not be empty")
        with self.db:
            self.db.execute("BEGIN")
            for table, ops in requests.items():
                for op in ops:
                    if "PutRequest" in op:
                        self.put_item(table, op["PutRequest"].get("Item") or {})
                    elif "DeleteRequest" in op:
                        self.delete_item(table, op["DeleteRequest"].get("Key") or {})
                    else:
                        raise validation("each write request is a PutRequest or a DeleteRequest")

    def query(self, name: str, p: dict) -> dict:
        """Query by key condition (see module doc)."""
        spec = self._spec(name)
        for unsupported in ("FilterExpression", "IndexName", "QueryFilter", "KeyConditions"):
            if p.get(unsupported):
                raise validation(f"the sandbox's DynamoDB does not support {unsupported} in Query")
        (hk, ht), rng = self._keys(spec)
        cond = parse_key_condition(p.get("KeyConditionExpression") or "", p.get("ExpressionAttributeNames") or {},
                                   p.get("ExpressionAttributeValues") or {})
        if set(cond) - {hk} - ({rng[0]} if rng else set()) or hk not in cond:
            raise validation(f"Query condition missed key schema element: {hk}")
        op, vals = cond[hk]
        if op != "=":
            raise validation("Query key condition not supported: the partition key takes = only")
        pk = f"{ht}:{_scalar(vals[0], ht, hk)}"
        where = ["tbl=?", "pk=?"]
        args: list[Any] = [name, pk]
        col = "sk_s"
        if rng:
            rk, rt = rng
            col = "sk_n" if rt == "N" else "sk_s"
            if rk in cond:
                rop, rvals = cond[rk]
                vs = [_scalar(v, rt, rk) for v in rvals]
                if rop == "BETWEEN":
                    if vs[0] > vs[1]:
                        raise validation("Invalid KeyConditionExpression: The BETWEEN operator requires upper bound "
                                         "to be greater than or equal to lower bound")
                    where.append(f"{col} BETWEEN ? AND ?")
                    args += vs
                elif rop == "begins_with":
                    if rt == "N":
                        raise validation("Invalid KeyConditionExpression: begins_with takes a string sort key")
                    where.append("substr(sk_s, 1, ?) = ?")
                    args += [len(vs[0]), vs[0]]
                else:
                    where.append(f"{col} {rop} ?")
                    args.append(vs[0])
        forward = p.get("ScanIndexForward", True)
        start = p.get("ExclusiveStartKey")
        if start:
            _, s_s, s_n = self._key_of(spec, start, "ExclusiveStartKey")
            where.append(f"{col} {'>' if forward else '<'} ?")
            args.append(s_n if col == "sk_n" else s_s)
        limit = p.get("Limit")
        if limit is not None and int(limit) < 1:
            raise validation("Limit must be at least 1")
        sql = (f"SELECT item, size FROM ddb_items WHERE {' AND '.join(where)} "
               f"ORDER BY {col} {'ASC' if forward else 'DESC'}")
        items: list[dict] = []
        used, last, more = 0, None, False
        for text, size in self.db.execute(sql, args):
            if (limit is not None and len(items) >= int(limit)) or used >= MAX_PAGE_BYTES:
                more = True
                break
            item = json.loads(text)
            items.append(item)
            used += size
            last = item
        out: dict = {"Count": len(items), "ScannedCount": len(items)}
        if p.get("Select") != "COUNT":
            out["Items"] = items
        if more and last is not None:
            out["LastEvaluatedKey"] = {k["AttributeName"]: last[k["AttributeName"]] for k in spec["KeySchema"]}
        return out


_KC_TOKEN = re.compile(r"\s*(<=|>=|<>|=|<|>|\(|\)|,|[#:]?[A-Za-z0-9_.-]+)")


def parse_key_condition(expr: str, names: dict, values: dict) -> dict[str, tuple[str, list]]:
    """``{attribute: (operator, [values])}`` of a KeyConditionExpression. Raises ValidationException."""
    if not expr.strip():
        raise validation("Either the KeyConditions or KeyConditionExpression parameter must be specified")
    toks, pos = [], 0
    while pos < len(expr):
        m = _KC_TOKEN.match(expr, pos)
        if not m:
            if expr[pos:].strip() == "":
                break
            raise validation(f"Invalid KeyConditionExpression: Syntax error; token: \"{expr[pos:pos + 10]}\"")
        toks.append(m.group(1))
        pos = m.end()

    def name(tok: str) -> str:
        if tok.startswith("#"):
            if tok not in names:
                raise validation(f"Value provided in ExpressionAttributeNames unused in expressions: {tok} "
                                 f"is not defined")
            return names[tok]
        return tok

    def value(tok: str) -> dict:
        if not tok.startswith(":") or tok not in values:
            raise validation(f"Invalid KeyConditionExpression: An expression attribute value used in expression "
                             f"is not defined; attribute value: {tok}")
        return values[tok]

    out: dict[str, tuple[str, list]] = {}
    i = 0

    def take() -> str:
        nonlocal i
        if i >= len(toks):
            raise validation("Invalid KeyConditionExpression: Syntax error; token: <EOF>")
        i += 1
        return toks[i - 1]

    while True:
        tok = take()
        if tok.lower() == "begins_with":
            if take() != "(":
                raise validation("Invalid KeyConditionExpression: begins_with(attribute, :value)")
            attr = name(take())
            take()
            v = value(take())
            if take() != ")":
                raise validation("Invalid KeyConditionExpression: begins_with(attribute, :value)")
            out[attr] = ("begins_with", [v])
        else:
            attr = name(tok)
            op = take()
            if op.upper() == "BETWEEN":
                lo = value(take())
                if take().upper() != "AND":
                    raise validation("Invalid KeyConditionExpression: BETWEEN :low AND :high")
                out[attr] = ("BETWEEN", [lo, value(take())])
            elif op in ("=", "<", "<=", ">", ">="):
                out[attr] = (op, [value(take())])
            else:
                raise validation(f"Invalid KeyConditionExpression: Invalid operator used in KeyConditionExpression: {op}")
        if i >= len(toks):
            return out
        if take().upper() != "AND":
            raise validation("Invalid KeyConditionExpression: conditions are joined with AND")
