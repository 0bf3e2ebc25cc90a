"""Telemetry history from the account's ``fleetdesk-telemetry`` table (the rule writes every
``dt/<thing>/env`` reading there, also while the app is closed), cached in the local store.

:func:`sync` reads a thing's readings for a time range (paged DynamoDB ``Query`` on the
thing + time key) into the local :class:`~fleetdesk.store.telemetry.TelemetryStore`, which
ignores readings it already has (same thing, time and sequence number): charts and export
then read the local store as before. Blocking (boto3): run it in a worker thread.
"""

from __future__ import annotations

from typing import Any

from fleetdesk.cloud.account_setup import TABLE
from fleetdesk.errors import CloudError
from fleetdesk.store.telemetry import Sample, TelemetryError, parse_sample


class HistoryUnavailable(CloudError):
    """The telemetry table cannot be read (missing, no permission, DynamoDB down)."""


def dynamodb_client(session: Any) -> Any:
    """The boto3 ``dynamodb`` client of a cloud session's profile."""
    backend = getattr(session, "backend", None)
    if backend is not None and hasattr(backend, "client"):
        return backend.client("dynamodb")
    from fleetdesk.cloud.setup_cli import clients

    return clients(session.profile)[1]


def _sample(thing: str, item: dict) -> Sample | None:
    def val(name):
        v = item.get(name) or {}
        return float(v["N"]) if "N" in v else None

    received = (val("ts") or 0) / 1000.0
    doc = {"temperature": val("temperature"), "humidity": val("humidity"), "ts": val("device_ts") or received}
    seq = val("seq")
    if seq is not None:
        doc["seq"] = int(seq)
    try:
        return parse_sample(thing, doc, received=received)
    except TelemetryError:
        return None


def fetch(dynamodb: Any, thing: str, since: float, until: float | None = None, table: str = TABLE) -> list[Sample]:
    """The readings of ``thing`` from ``since`` to ``until`` (epoch seconds) in the table.

    Raises:
        HistoryUnavailable: the table is missing or cannot be read (message says which and what to do).
    """
    hi = int((until if until is not None else 4102444800) * 1000)
    kw = {"TableName": table, "KeyConditionExpression": "thing = :t AND ts BETWEEN :a AND :b",
          "ExpressionAttributeValues": {":t": {"S": thing}, ":a": {"N": str(int(since * 1000))}, ":b": {"N": str(hi)}}}
    out: list[Sample] = []
    try:
        while True:
            page = dynamodb.query(**kw)
            out += [s for s in (_sample(thing, i) for i in page.get("Items") or []) if s is not None]
            if not page.get("LastEvaluatedKey"):
                return out
            kw["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    except Exception as exc:  # botocore errors, told apart by code
        code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
        if code == "ResourceNotFoundException":
            raise HistoryUnavailable(f"the telemetry table {table} does not exist in this account",
                                     "run `fleetdesk cloud setup` (or Settings > Set up this account)") from exc
        raise HistoryUnavailable(f"history from DynamoDB is unavailable ({code or type(exc).__name__}: {exc})",
                                 "live data still shows; the chart has what this computer stored") from exc


def sync(store: Any, dynamodb: Any, thing: str, since: float, until: float | None = None) -> int:
    """Copy ``thing``'s readings in the range into the local store; the number new to it."""
    return store.insert_many(fetch(dynamodb, thing, since, until))
