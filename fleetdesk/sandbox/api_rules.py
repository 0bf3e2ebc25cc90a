"""Control-plane routes of topic rules: Create/Get/List/Replace/Delete/Enable/DisableTopicRule."""

from __future__ import annotations

from fleetdesk.sandbox.awserror import AwsError
from fleetdesk.sandbox.control_plane import model_routes, offset_page, running_service


def _engine(ctx):
    return running_service(ctx, "rules", "rules engine")


def _payload(request) -> dict:
    """topicRulePayload is the request body (the model makes it the HTTP payload)."""
    payload = request.params.get("topicRulePayload")
    if isinstance(payload, (bytes, bytearray)):
        return request.json()
    return payload or {}


async def create_topic_rule(ctx, request):
    p = request.params
    _engine(ctx).create(p["ruleName"], _payload(request))
    await _engine(ctx).sync_link()
    return {}


async def replace_topic_rule(ctx, request):
    p = request.params
    _engine(ctx).replace(p["ruleName"], _payload(request))
    await _engine(ctx).sync_link()
    return {}


def get_topic_rule(ctx, request):
    return _engine(ctx).get(request.params["ruleName"])


async def delete_topic_rule(ctx, request):
    _engine(ctx).delete(request.params["ruleName"])
    await _engine(ctx).sync_link()
    return {}


async def enable_topic_rule(ctx, request):
    _engine(ctx).set_enabled(request.params["ruleName"], True)
    await _engine(ctx).sync_link()
    return {}


async def disable_topic_rule(ctx, request):
    _engine(ctx).set_enabled(request.params["ruleName"], False)
    await _engine(ctx).sync_link()
    return {}


def list_topic_rules(ctx, request):
    p = request.params
    rules = _engine(ctx).listing()
    if p.get("topic"):
        rules = [r for r in rules if r["topicPattern"] == p["topic"]]
    if p.get("ruleDisabled") is not None:
        rules = [r for r in rules if r["ruleDisabled"] == bool(p["ruleDisabled"])]
    size = int(p.get("maxResults") or 1000)
    if not 1 <= size <= 10000:
        raise AwsError("InvalidRequestException", "maxResults must be between 1 and 10000")
    page, nxt = offset_page(rules, p.get("nextToken"), size)
    return {"rules": page, **({"nextToken": nxt} if nxt else {})}


_OPERATIONS = {
    "CreateTopicRule": create_topic_rule, "ReplaceTopicRule": replace_topic_rule, "GetTopicRule": get_topic_rule,
    "DeleteTopicRule": delete_topic_rule, "EnableTopicRule": enable_topic_rule,
    "DisableTopicRule": disable_topic_rule, "ListTopicRules": list_topic_rules,
}

ROUTES = model_routes("iot", _OPERATIONS)
