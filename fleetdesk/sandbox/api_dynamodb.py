"""The sandbox's DynamoDB endpoint: boto3's ``dynamodb`` client on the control-plane port.

DynamoDB speaks AWS JSON 1.0: ``POST /`` with ``X-Amz-Target: DynamoDB_20120810.<Operation>``,
signed with SigV4 scope "dynamodb" (the control plane's one dispatch checks the signature and
routes by that scope). Errors carry ``__type`` in the body, as botocore's JSON parser reads them.
``AWS_ENDPOINT_URL_DYNAMODB`` from ``fleetdesk sandbox env`` points boto3 here.
"""

from __future__ import annotations

import json

from fleetdesk.sandbox.dynamodb_store import DynamoError, validation

TARGET_PREFIX = "DynamoDB_20120810."


def _store(ctx):
    store = ctx.extras.get("dynamodb")
    if store is None:
        raise DynamoError("ServiceUnavailable", "the sandbox DynamoDB service is not running", 503)
    return store


def _table(p: dict) -> str:
    name = p.get("TableName")
    if not name:
        raise validation("1 validation error detected: Value null at 'tableName' failed to satisfy constraint: "
                         "Member must not be null")
    return name


def create_table(store, p):
    return {"TableDescription": store.create_table(p)}


def describe_table(store, p):
    return {"Table": store.describe_table(_table(p))}


def list_tables(store, p):
    names = store.list_tables()
    start = p.get("ExclusiveStartTableName")
    if start:
        names = [n for n in names if n > start]
    limit = int(p.get("Limit") or 100)
    out = {"TableNames": names[:limit]}
    if len(names) > limit:
        out["LastEvaluatedTableName"] = names[limit - 1]
    return out


def delete_table(store, p):
    return {"TableDescription": store.delete_table(_table(p))}


def put_item(store, p):
    for unsupported in ("ConditionExpression", "Expected"):
        if p.get(unsupported):
            raise validation(f"the sandbox's DynamoDB does not support {unsupported} in PutItem")
    store.put_item(_table(p), p.get("Item") or {})
    return {}


def get_item(store, p):
    item = store.get_item(_table(p), p.get("Key") or {})
    return {"Item": item} if item is not None else {}


def delete_item(store, p):
    store.delete_item(_table(p), p.get("Key") or {})
    return {}


def batch_write_item(store, p):
    store.batch_write(p.get("RequestItems") or {})
    return {"UnprocessedItems": {}}


def query(store, p):
    return store.query(_table(p), p)


def update_time_to_live(store, p):
    return {"TimeToLiveSpecification": store.update_ttl(_table(p), p.get("TimeToLiveSpecification") or {})}


def describe_time_to_live(store, p):
    return {"TimeToLiveDescription": store.describe_ttl(_table(p))}


OPERATIONS = {
    "CreateTable": create_table, "DescribeTable": describe_table, "ListTables": list_tables,
    "DeleteTable": delete_table, "PutItem": put_item, "GetItem": get_item, "DeleteItem": delete_item,
    "BatchWriteItem": batch_write_item, "Query": query, "UpdateTimeToLive": update_time_to_live,
    "DescribeTimeToLive": describe_time_to_live,
}


def _error(exc: DynamoError):
    prefix = "com.amazonaws.dynamodb.v20120810#" if exc.code != "ServiceUnavailable" else "com.amazon.coral.availability#"
    return exc.status, {"__type": prefix + exc.code, "message": exc.message}


def handle(ctx, request):
    target = request.headers.get("X-Amz-Target", "")
    op = OPERATIONS.get(target[len(TARGET_PREFIX):]) if target.startswith(TARGET_PREFIX) else None
    if op is None:
        return 400, {"__type": "com.amazon.coral.service#UnknownOperationException",
                     "message": f"the sandbox's DynamoDB does not implement {target or 'this request'}"}
    try:
        try:
            params = json.loads(request.body or b"{}")
        except ValueError:
            raise DynamoError("SerializationException", "the request body is not JSON") from None
        if not isinstance(params, dict):
            raise DynamoError("SerializationException", "the request body must be a JSON object")
        return 200, op(_store(ctx), params)
    except DynamoError as exc:
        return _error(exc)


ROUTES = [("dynamodb", "POST", r"^/$", handle)]


class _Running:
    def __init__(self, store, task) -> None:
        self.store, self.task = store, task

    async def stop(self) -> None:
        self.task.cancel()
        self.store.close()


SWEEP_EVERY_S = 30.0


async def start(ctx):
    """Start the DynamoDB store (``ctx.extras["dynamodb"]``) and its TTL sweeper."""
    import asyncio
    import logging
    from pathlib import Path

    from fleetdesk.sandbox.dynamodb_store import DynamoStore

    store = DynamoStore(Path(ctx.state_dir) / "dynamodb.sqlite", ctx.region, ctx.account_id)
    ctx.extras["dynamodb"] = store

    async def sweep() -> None:
        while True:
            await asyncio.sleep(SWEEP_EVERY_S)
            try:
                store.sweep_expired()
            except Exception:  # keep sweeping
                logging.getLogger(__name__).exception("dynamodb: TTL sweep failed")

    return _Running(store, asyncio.ensure_future(sweep()))
