"""The Fleet page's data on AWS's own engines: fleet indexing instead of ListThings + shadows.

One :meth:`FleetIndex.page` is one ``SearchIndex`` call (at most 100 things, AWS's page
limit), filtered on the server: :func:`filter_query` turns the filter box and the group
selector into AWS's query syntax (text typed in that syntax, e.g.
``shadow.reported.temperature:[30 TO *]``, is passed as it is). :meth:`FleetIndex.tiles` gives
the header tiles from aggregations (online count, firmware versions, temperature range), so
the cost of a refresh does not grow with the fleet. Blocking calls (boto3): run them in a
worker thread.

Throttling (``ThrottlingException``, AWS's SearchIndex TPS) is retried with exponential
back-off; ``on_throttled(delay_s)`` lets the UI say so; after the last retry
:class:`IndexThrottled` is raised. A query AWS refuses is :class:`InvalidQuery` (AWS's message),
indexing off is :class:`IndexMissing` (advice: ``fleetdesk cloud setup``).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from fleetdesk.errors import CloudError

PAGE_SIZE = 100  # SearchIndex maxResults cannot exceed 100
SETUP_ADVICE = ("turn on fleet indexing: run `fleetdesk cloud setup` (or Settings > Set up this account "
                "for Fleetdesk)")
_SYNTAX = re.compile(r"[:()\[\]{}\"*?]|\b(AND|OR|NOT)\b")
_SPECIAL = re.compile(r'([+\-!(){}\[\]^"~*?:\\/&|@#%\';,`\s])')


class InvalidQuery(CloudError):
    """AWS refused the query (InvalidQueryException)."""


class IndexMissing(CloudError):
    """The account has no fleet index (indexing off)."""


class IndexThrottled(CloudError):
    """AWS kept throttling the index APIs."""


def _escape(word: str) -> str:
    return _SPECIAL.sub(r"\\\1", word)


def filter_query(text: str = "", group: str = "") -> str:
    """AWS's query for the filter box text and the group selector ("*" for everything).

    Plain words match the start of the thing name, the firmware version or a group name;
    text that uses the query syntax (``field:value``, ranges, AND/OR/NOT, wildcards) is used as typed.
    """
    text = (text or "").strip()
    parts: list[str] = []
    if text:
        if _SYNTAX.search(text):
            parts.append(f"({text})")
        else:
            for word in text.split()[:4]:  # three terms a word: AWS allows twelve per query
                w = _escape(word)
                parts.append(f"(thingName:{w}* OR shadow.reported.firmware_version:{w}* OR thingGroupNames:{w}*)")
    if group:
        parts.append(f"thingGroupNames:{_escape(group)}")
    return " AND ".join(parts) if parts else "*"


@dataclass
class FleetRow:
    """One thing as the Fleet table shows it (from its index document)."""

    name: str
    connected: bool | None = None
    disconnect_reason: str = ""
    since_ms: int | None = None
    firmware: str = ""
    temperature: float | None = None
    humidity: float | None = None
    groups: list[str] = field(default_factory=list)
    thing_type: str = ""
    attributes: dict = field(default_factory=dict)
    shadow_version: int | None = None


def row_from_document(doc: dict) -> FleetRow:
    shadow: dict = {}
    if doc.get("shadow"):
        try:
            shadow = json.loads(doc["shadow"])
        except ValueError:
            shadow = {}
    reported = shadow.get("reported") or {}
    conn = doc.get("connectivity") or {}

    def num(v):
        return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None

    return FleetRow(
        name=doc["thingName"], connected=conn.get("connected") if conn else None,
        disconnect_reason=conn.get("disconnectReason", ""), since_ms=conn.get("timestamp"),
        firmware=str(reported.get("firmware_version") or ""), temperature=num(reported.get("temperature")),
        humidity=num(reported.get("humidity")), groups=list(doc.get("thingGroupNames") or []),
        thing_type=doc.get("thingTypeName") or "", attributes=dict(doc.get("attributes") or {}),
        shadow_version=shadow.get("version"))


@dataclass
class Page:
    query: str
    rows: list[FleetRow]
    next_token: str | None
    number: int = 1


@dataclass
class Tiles:
    total: int = 0
    online: int = 0
    firmware: list[tuple[str, int]] = field(default_factory=list)
    temp_min: float | None = None
    temp_max: float | None = None
    temp_avg: float | None = None


def _code(exc: Exception) -> str:
    return getattr(exc, "response", {}).get("Error", {}).get("Code", "")


def _message(exc: Exception) -> str:
    return getattr(exc, "response", {}).get("Error", {}).get("Message", "") or str(exc)


class FleetIndex:
    """SearchIndex paging and aggregations over a boto3 ``iot`` client.

    Args:
        iot: boto3 ``iot`` client (the profile's).
        page_size: things per page (1..100).
        retries: throttled calls are retried this many times (delays 0.5, 1, 2, ... s).
        on_throttled: ``fn(delay_s)`` before each back-off wait (any thread).
        sleep: for tests.
    """

    def __init__(self, iot: Any, page_size: int = PAGE_SIZE, retries: int = 5,
                 on_throttled: Callable[[float], None] | None = None, sleep: Callable[[float], None] = time.sleep) -> None:
        self.iot = iot
        self.page_size = max(1, min(PAGE_SIZE, page_size))
        self.retries = retries
        self.on_throttled = on_throttled
        self.sleep = sleep
        self.calls = 0
        self.throttled = 0

    def _call(self, fn: Callable, **kwargs: Any) -> dict:
        delay = 0.5
        for attempt in range(self.retries + 1):
            self.calls += 1
            try:
                return fn(**kwargs)
            except Exception as exc:  # botocore ClientError, classified below
                code = _code(exc)
                if code == "InvalidQueryException":
                    raise InvalidQuery(f"the index refused the query: {_message(exc)}",
                                       "fix the filter (AWS query syntax: field:value, ranges [a TO b], AND/OR/NOT), "
                                       "or clear it") from exc
                if code in ("ResourceNotFoundException", "IndexNotReadyException"):
                    raise IndexMissing(f"this account has no fleet index ({_message(exc)})", SETUP_ADVICE) from exc
                if code not in ("ThrottlingException", "TooManyRequestsException", "LimitExceededException") \
                        or attempt == self.retries:
                    if code in ("ThrottlingException", "TooManyRequestsException"):
                        raise IndexThrottled("AWS is throttling fleet-index requests",
                                             "wait a few seconds; the page refreshes less often meanwhile") from exc
                    raise
                self.throttled += 1
                if self.on_throttled:
                    self.on_throttled(delay)
                self.sleep(delay)
                delay = min(delay * 2, 8.0)
        raise AssertionError("unreachable")

    def available(self) -> bool:
        """True if thing indexing is on (GetIndexingConfiguration)."""
        cfg = self._call(self.iot.get_indexing_configuration).get("thingIndexingConfiguration") or {}
        return cfg.get("thingIndexingMode", "OFF") != "OFF"

    def groups(self) -> list[str]:
        """Every thing group's name (for the group selector; a few ListThingGroups pages)."""
        names, token = [], None
        while True:
            out = self._call(self.iot.list_thing_groups, maxResults=250, **({"nextToken": token} if token else {}))
            names += [g["groupName"] for g in out.get("thingGroups") or []]
            token = out.get("nextToken")
            if not token:
                return sorted(names)

    def all_names(self, query: str, limit: int = 10_000) -> list[str]:
        """Names of every thing the query matches (all pages, at most ``limit``): bulk actions on a query."""
        names: list[str] = []
        token = None
        while len(names) < limit:
            page = self.page(query, token)
            names += [r.name for r in page.rows]
            token = page.next_token
            if not token:
                break
        return names[:limit]

    def page(self, query: str, token: str | None = None, number: int = 1) -> Page:
        kw: dict = {"queryString": query, "maxResults": self.page_size}
        if token:
            kw["nextToken"] = token
        out = self._call(self.iot.search_index, **kw)
        return Page(query, [row_from_document(d) for d in out.get("things") or []], out.get("nextToken"), number)

    def tiles(self, query: str = "*") -> Tiles:
        online = self._call(self.iot.get_buckets_aggregation, queryString=query,
                            aggregationField="connectivity.connected",
                            bucketsAggregationType={"termsAggregation": {"maxBuckets": 2}})
        t = Tiles(total=int(online.get("totalCount") or 0))
        t.online = next((b["count"] for b in online.get("buckets") or [] if b["keyValue"] == "true"), 0)
        fw = self._call(self.iot.get_buckets_aggregation, queryString=query,
                        aggregationField="shadow.reported.firmware_version",
                        bucketsAggregationType={"termsAggregation": {"maxBuckets": 5}})
        t.firmware = [(b["keyValue"], b["count"]) for b in fw.get("buckets") or []]
        st = self._call(self.iot.get_statistics, queryString=query,
                        aggregationField="shadow.reported.temperature").get("statistics") or {}
        if st.get("count"):
            t.temp_min, t.temp_max, t.temp_avg = st.get("minimum"), st.get("maximum"), st.get("average")
        return t
