"""Control-plane routes of fleet indexing: configuration, SearchIndex, aggregations, dynamic groups.

Limits and errors as AWS's (https://docs.aws.amazon.com/iot/latest/apireference/API_SearchIndex.html):
``maxResults`` 1..100 per page; a query AWS refuses is ``InvalidQueryException``; an
aggregation over a field that is not indexed (managed or custom) is
``InvalidAggregationException``; with indexing off the index does not exist
(``ResourceNotFoundException``).
"""

from __future__ import annotations

import math

from fleetdesk.sandbox.awserror import AwsError
from fleetdesk.sandbox.control_plane import model_routes, running_service
from fleetdesk.sandbox.index_query import QueryError, parse
from fleetdesk.sandbox.index_service import THING_INDEX

MAX_SEARCH_RESULTS = 100
MAX_BUCKETS = 10000
DEFAULT_BUCKETS = 10


def _index(ctx):
    return running_service(ctx, "index", "fleet indexing")


def _query(text) -> str:
    try:
        parse(text)
    except QueryError as exc:
        raise AwsError("InvalidQueryException", f"Invalid query string: {exc}") from exc
    return text


def _quota(ctx, api: str, request) -> None:
    quotas = ctx.extras.get("quotas")
    if quotas is not None:
        quotas.control_plane(api, request)


async def update_indexing_configuration(ctx, request):
    p = request.params
    index = _index(ctx)
    mode = (p.get("thingIndexingConfiguration") or {}).get("thingIndexingMode")
    if mode in ("REGISTRY", "REGISTRY_AND_SHADOW"):
        await index.sync_link(True)  # follow shadow events before the rebuild reads the shadows
    try:
        index.update_configuration(p.get("thingIndexingConfiguration"), p.get("thingGroupIndexingConfiguration"))
    finally:
        await index.sync_link()
    return {}


def get_indexing_configuration(ctx, request):
    return _index(ctx).get_configuration()


def search_index(ctx, request):
    p = request.params
    _quota(ctx, "SearchIndex", request)
    index = _index(ctx)
    index.require_index(p.get("indexName"))
    size = p.get("maxResults")
    size = MAX_SEARCH_RESULTS if size is None else int(size)
    if not 1 <= size <= MAX_SEARCH_RESULTS:
        raise AwsError("InvalidRequestException", f"maxResults must be between 1 and {MAX_SEARCH_RESULTS}")
    try:
        things, nxt = index.store.search(_query(p["queryString"]), size, p.get("nextToken"))
    except ValueError as exc:
        raise AwsError("InvalidRequestException", str(exc)) from exc
    out = {"things": things, "thingGroups": []}
    if nxt:
        out["nextToken"] = nxt
    return out


def _field(index, p, allowed: tuple[str, ...], api: str) -> str:
    field = p.get("aggregationField") or "thingName"
    ftype = index.field_types().get(field)
    if ftype is None:
        raise AwsError("InvalidAggregationException",
                       f"{field} is not an indexed field: add it to customFields with UpdateIndexingConfiguration "
                       f"(or use a managed field such as thingName or connectivity.connected)")
    if ftype not in allowed:
        raise AwsError("InvalidAggregationException",
                       f"{api} does not aggregate {ftype} fields ({field}); it takes {' or '.join(allowed)} fields")
    return field


def _aggregation(ctx, request, allowed: tuple[str, ...], api: str):
    """What every aggregation call checks first: the running index, the index name, the query and the field.

    Returns (params, index, query, field)."""
    p = request.params
    index = _index(ctx)
    index.require_index(p.get("indexName"))
    query = _query(p["queryString"])
    return p, index, query, _field(index, p, allowed, api)


def get_statistics(ctx, request):
    _p, index, query, field = _aggregation(ctx, request, ("Number", "String", "Boolean"), "GetStatistics")
    if index.field_types()[field] != "Number":
        return {"statistics": {"count": index.store.count(query) if field == "thingName"
                               else index.store.value_count(query, field)}}
    st = index.store.numeric_stats(query, field)
    n = st["count"]
    if not n:
        return {"statistics": {"count": 0}}
    avg = st["sum"] / n
    variance = max(st["sumOfSquares"] / n - avg * avg, 0.0)
    return {"statistics": {"count": n, "average": avg, "sum": st["sum"], "minimum": st["minimum"],
                           "maximum": st["maximum"], "sumOfSquares": st["sumOfSquares"], "variance": variance,
                           "stdDeviation": math.sqrt(variance)}}


def get_cardinality(ctx, request):
    _p, index, query, field = _aggregation(ctx, request, ("String", "Boolean"), "GetCardinality")
    return {"cardinality": index.store.cardinality(query, field)}


def get_buckets_aggregation(ctx, request):
    p, index, query, field = _aggregation(ctx, request, ("String", "Boolean"), "GetBucketsAggregation")
    terms = (p.get("bucketsAggregationType") or {}).get("termsAggregation") or {}
    size = int(terms.get("maxBuckets") or DEFAULT_BUCKETS)
    if not 1 <= size <= MAX_BUCKETS:
        raise AwsError("InvalidRequestException", f"maxBuckets must be between 1 and {MAX_BUCKETS}")
    return {"totalCount": index.store.count(query), "buckets": index.store.buckets(query, field, size)}


def describe_index(ctx, request):
    index = _index(ctx)
    index.require_index(request.params["indexName"])
    schema = index.thing_config["thingIndexingMode"]
    if index.thing_config.get("thingConnectivityIndexingMode") == "STATUS":
        schema += "_AND_CONNECTIVITY_STATUS"
    return {"indexName": THING_INDEX, "indexStatus": "ACTIVE", "schema": schema}


def list_indices(ctx, request):
    return {"indexNames": [THING_INDEX] if _index(ctx).enabled else []}


# -- dynamic thing groups ---------------------------------------------------------------
async def create_dynamic_thing_group(ctx, request):
    p = request.params
    index = _index(ctx)
    index.require_index(p.get("indexName"))
    query = _query(p["queryString"])
    name = p["thingGroupName"]
    d = ctx.registry.create_thing_group(name, None, p.get("thingGroupProperties"))
    index.store.put_dynamic_group(name, query, p.get("indexName") or THING_INDEX, p.get("queryVersion") or "2017-09-30")
    index.fill_dynamic_group(name, query)
    await ctx.changed("thing_group", "created", name, dynamic=True)
    return {**d, "indexName": p.get("indexName") or THING_INDEX, "queryString": query,
            "queryVersion": p.get("queryVersion") or "2017-09-30"}


async def update_dynamic_thing_group(ctx, request):
    p = request.params
    index = _index(ctx)
    name = p["thingGroupName"]
    current = index.store.dynamic_group(name)
    if current is None:
        raise AwsError("ResourceNotFoundException", f"Dynamic thing group {name} cannot be found.", 404)
    query = _query(p.get("queryString") or current["queryString"])
    version = ctx.registry.update_thing_group(name, p.get("thingGroupProperties"), p.get("expectedVersion"))
    index.store.put_dynamic_group(name, query, p.get("indexName") or current["indexName"],
                                  p.get("queryVersion") or current["queryVersion"])
    index.fill_dynamic_group(name, query)
    await ctx.changed("thing_group", "updated", name, properties=True)
    return {"version": version}


async def delete_dynamic_thing_group(ctx, request):
    p = request.params
    index = _index(ctx)
    name = p["thingGroupName"]
    if index.store.dynamic_group(name) is None:
        if ctx.registry.db.execute("SELECT 1 FROM thing_groups WHERE name=?", (name,)).fetchone():
            raise AwsError("InvalidRequestException", f"{name} is a static thing group: use DeleteThingGroup")
        return {}
    members = [r[0] for r in ctx.registry.db.execute("SELECT thing FROM group_members WHERE grp=?", (name,))]
    index.store.delete_dynamic_group(name)
    ctx.registry.delete_thing_group(name)
    for thing in members:
        index.reindex(thing)
    await ctx.changed("thing_group", "deleted", name)
    return {}


_OPERATIONS = {
    "UpdateIndexingConfiguration": update_indexing_configuration,
    "GetIndexingConfiguration": get_indexing_configuration,
    "SearchIndex": search_index,
    "GetStatistics": get_statistics,
    "GetCardinality": get_cardinality,
    "GetBucketsAggregation": get_buckets_aggregation,
    "DescribeIndex": describe_index,
    "ListIndices": list_indices,
    "CreateDynamicThingGroup": create_dynamic_thing_group,
    "UpdateDynamicThingGroup": update_dynamic_thing_group,
    "DeleteDynamicThingGroup": delete_dynamic_thing_group,
}

ROUTES = model_routes("iot", _OPERATIONS)
