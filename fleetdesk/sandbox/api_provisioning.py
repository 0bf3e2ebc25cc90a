"""Control-plane routes for fleet-provisioning templates (boto3 ``iot``).

CreateProvisioningTemplate, DescribeProvisioningTemplate, ListProvisioningTemplates,
UpdateProvisioningTemplate, DeleteProvisioningTemplate; the templates are applied by :mod:`provisioning` over MQTT.
"""

from __future__ import annotations

import re
import time

from fleetdesk.sandbox.awserror import AwsError
from fleetdesk.sandbox.control_plane import list_page, model_routes
from fleetdesk.sandbox.provisioning import TemplateStore, validate_template_body

NAME_RE = re.compile(r"^[0-9A-Za-z_-]{1,36}$")


def _store(ctx) -> TemplateStore:
    return TemplateStore(ctx.state_dir)


def _arn(ctx, name: str) -> str:
    return f"arn:aws:iot:{ctx.region}:{ctx.account_id}:provisioningtemplate/{name}"


def create_template(ctx, request):
    p = request.params
    name = p["templateName"]
    if not NAME_RE.match(name):
        raise AwsError("InvalidRequestException", "templateName must match [0-9A-Za-z_-]{1,36}")
    store = _store(ctx)
    if store.get(name) is not None:
        raise AwsError("ResourceAlreadyExistsException", f"Template {name} already exists", 409)
    try:
        validate_template_body(p["templateBody"])
    except ValueError as exc:
        raise AwsError("InvalidRequestException", f"templateBody is invalid: {exc}") from exc
    kind = p.get("type") or "FLEET_PROVISIONING"
    now = time.time()
    store.put({
        "templateName": name, "templateArn": _arn(ctx, name), "description": p.get("description") or "",
        "templateBody": p["templateBody"], "enabled": bool(p.get("enabled", False)),
        "provisioningRoleArn": p["provisioningRoleArn"], "preProvisioningHook": p.get("preProvisioningHook"),
        "type": kind, "creationDate": now, "lastModifiedDate": now, "defaultVersionId": 1,
    })
    return {"templateArn": _arn(ctx, name), "templateName": name, "defaultVersionId": 1}


def describe_template(ctx, request):
    name = request.params["templateName"]
    t = _store(ctx).get(name)
    if t is None:
        raise AwsError("ResourceNotFoundException", f"Template {name} does not exist", 404)
    return {k: v for k, v in t.items() if v is not None}


def list_templates(ctx, request):
    p = request.params
    items = [{k: t[k] for k in ("templateArn", "templateName", "description", "creationDate",
                                  "lastModifiedDate", "enabled", "type")}
             for _, t in sorted(_store(ctx).all().items())]
    return list_page(items, p, "templates")


def update_template(ctx, request):
    p = request.params
    store = _store(ctx)
    t = store.get(p["templateName"])
    if t is None:
        raise AwsError("ResourceNotFoundException", f"Template {p['templateName']} does not exist", 404)
    for key in ("description", "enabled", "provisioningRoleArn", "preProvisioningHook"):
        if p.get(key) is not None:
            t[key] = p[key]
    if p.get("removePreProvisioningHook"):
        t["preProvisioningHook"] = None
    t["lastModifiedDate"] = time.time()
    store.put(t)
    return {}


def delete_template(ctx, request):
    name = request.params["templateName"]
    if not _store(ctx).delete(name):
        raise AwsError("ResourceNotFoundException", f"Template {name} does not exist", 404)
    return {}


ROUTES = model_routes("iot", {
    "CreateProvisioningTemplate": create_template,
    "DescribeProvisioningTemplate": describe_template,
    "ListProvisioningTemplates": list_templates,
    "UpdateProvisioningTemplate": update_template,
    "DeleteProvisioningTemplate": delete_template,
})
