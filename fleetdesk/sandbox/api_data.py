"""Control-plane routes of boto3's ``iot-data``: shadows over HTTP and Publish.

GetThingShadow / UpdateThingShadow / DeleteThingShadow share the MQTT shadow service
(same semantics, same ``/update/accepted|delta|documents`` notifications);
ListNamedShadowsForThing pages the thing's named shadows; Publish puts a message on the
broker as the privileged internal client. Also ``iot`` GetThingConnectivityData (from the
presence service).
"""

from __future__ import annotations

import time

from fleetdesk.sandbox.awserror import AwsError
from fleetdesk.sandbox.control_plane import model_routes, offset_page, running_service
from fleetdesk.sandbox.reserved import publish_refusal
from fleetdesk.sandbox.shadow_doc import ShadowError
from fleetdesk.sandbox.shadow_service import SHADOW_NAME_RE

MAX_PUBLISH_BYTES = 128 * 1024  # AWS IoT Core message size limit

_CODES = {
    400: "InvalidRequestException",
    404: "ResourceNotFoundException",
    409: "ConflictException",
    413: "RequestEntityTooLargeException",
    429: "ThrottlingException",
    500: "InternalFailureException",
}


def _service(ctx):
    return running_service(ctx, "shadows", "shadow")


def _name(request) -> str:
    name = request.params.get("shadowName") or ""
    if name and not SHADOW_NAME_RE.match(name):
        raise AwsError("InvalidRequestException", "Invalid shadow name: use 1-64 of [a-zA-Z0-9:_-]")
    return name


def _aws(exc: ShadowError) -> AwsError:
    return AwsError(_CODES.get(exc.code, "InvalidRequestException"), exc.message, exc.code)


def _shadow_call(ctx, request, method: str, *args):
    """``service.<method>(thing, shadow name, *args)`` for the request; ShadowError becomes AwsError."""
    try:
        return getattr(_service(ctx), method)(request.params["thingName"], _name(request), *args)
    except ShadowError as exc:
        raise _aws(exc) from exc


def get_thing_shadow(ctx, request):
    quotas = ctx.extras.get("quotas")
    if quotas is not None:
        quotas.control_plane("GetThingShadow", request)
    return _shadow_call(ctx, request, "get_document")


def update_thing_shadow(ctx, request):
    return _shadow_call(ctx, request, "update_document", request.params.get("payload") or b"")


def delete_thing_shadow(ctx, request):
    return _shadow_call(ctx, request, "delete_document")


def list_named_shadows(ctx, request):
    p = request.params
    names = _service(ctx).list_named(p["thingName"])
    size = int(p.get("pageSize") or 25)
    if not 1 <= size <= 100:
        raise AwsError("InvalidRequestException", "pageSize must be between 1 and 100")
    page, nxt = offset_page(names, p.get("nextToken"), size)
    out = {"results": page, "timestamp": int(time.time())}
    if nxt:
        out["nextToken"] = nxt
    return out


def publish(ctx, request):
    p = request.params
    topic = p["topic"]
    qos = int(p.get("qos") or 0)
    if qos not in (0, 1):
        raise AwsError("InvalidRequestException", "qos must be 0 or 1")
    if not topic or "#" in topic or "+" in topic or len(topic.encode()) > 256:
        raise AwsError("InvalidRequestException", f"invalid topic {topic!r}")
    refusal = publish_refusal(topic, bool(p.get("retain")))
    if refusal:
        if "retained" in refusal:
            raise AwsError("InvalidRequestException", refusal)
        raise AwsError("ForbiddenException", refusal, 403)
    payload = p.get("payload") or b""
    if len(payload) > MAX_PUBLISH_BYTES:
        raise AwsError("RequestEntityTooLargeException",
                       f"The payload is {len(payload)} bytes; AWS IoT accepts at most {MAX_PUBLISH_BYTES}", 413)
    link = _service(ctx).link
    link.publish(topic, payload, qos=qos, retain=bool(p.get("retain")))
    return {}


def get_thing_connectivity_data(ctx, request):
    thing = request.params["thingName"]
    ctx.registry.describe_thing(thing)  # ResourceNotFoundException for an unknown thing
    return running_service(ctx, "presence", "presence").connectivity(thing)


ROUTES = model_routes("iot", {"GetThingConnectivityData": get_thing_connectivity_data}) + model_routes("iot-data", {
    "GetThingShadow": get_thing_shadow,
    "UpdateThingShadow": update_thing_shadow,
    "DeleteThingShadow": delete_thing_shadow,
    "ListNamedShadowsForThing": list_named_shadows,
    "Publish": publish,
})
