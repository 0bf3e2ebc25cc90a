"""Control-plane routes of the registry: things, thing groups, certificates, policies."""

from __future__ import annotations

from fleetdesk.sandbox.awserror import AwsError, invalid
from fleetdesk.sandbox.ca import BadCsrError
from fleetdesk.sandbox.control_plane import model_routes
from fleetdesk.sandbox.registry import _page


def _p(request) -> dict:
    return request.params


def _listing(key: str, items: list, nxt: str | None, token: str = "nextToken") -> dict:
    """A List* reply: the page under ``key``, and the ``token`` for the next page when there is one."""
    return {key: items, **({token: nxt} if nxt else {})}


# -- things ----------------------------------------------------------------------------
async def create_thing(ctx, request):
    p = _p(request)
    attrs = (p.get("attributePayload") or {}).get("attributes") or {}
    d = ctx.registry.create_thing(p["thingName"], p.get("thingTypeName"), attrs)
    await ctx.changed("thing", "created", p["thingName"])
    return {"thingName": d["thingName"], "thingArn": d["thingArn"], "thingId": d["thingId"]}


def describe_thing(ctx, request):
    return ctx.registry.describe_thing(_p(request)["thingName"])


def list_things(ctx, request):
    p = _p(request)
    quotas = ctx.extras.get("quotas")
    if quotas is not None:
        quotas.control_plane("ListThings", request)
    things, nxt = ctx.registry.list_things(
        attribute_name=p.get("attributeName"), attribute_value=p.get("attributeValue"),
        prefix=bool(p.get("usePrefixAttributeValue")), thing_type=p.get("thingTypeName"),
        token=p.get("nextToken"), max_results=p.get("maxResults"))
    return _listing("things", things, nxt)


async def update_thing(ctx, request):
    p = _p(request)
    ctx.registry.update_thing(p["thingName"], thing_type=p.get("thingTypeName"),
                              attribute_payload=p.get("attributePayload"),
                              expected_version=p.get("expectedVersion"),
                              remove_thing_type=bool(p.get("removeThingType")))
    await ctx.changed("thing", "updated", p["thingName"])
    return {}


async def delete_thing(ctx, request):
    p = _p(request)
    ctx.registry.delete_thing(p["thingName"], p.get("expectedVersion"))
    await ctx.changed("thing", "deleted", p["thingName"])
    return {}


# -- thing types -----------------------------------------------------------------------
def create_thing_type(ctx, request):
    p = _p(request)
    return ctx.registry.thing_types.create_thing_type(p["thingTypeName"], p.get("thingTypeProperties"))


def describe_thing_type(ctx, request):
    return ctx.registry.thing_types.describe_thing_type(_p(request)["thingTypeName"])


def list_thing_types(ctx, request):
    p = _p(request)
    page, nxt = _page(ctx.registry.thing_types.list_thing_types(p.get("thingTypeName")), p.get("nextToken"), p.get("maxResults"), 50)
    return _listing("thingTypes", page, nxt)


def deprecate_thing_type(ctx, request):
    p = _p(request)
    ctx.registry.thing_types.deprecate_thing_type(p["thingTypeName"], bool(p.get("undoDeprecate")))
    return {}


def delete_thing_type(ctx, request):
    ctx.registry.thing_types.delete_thing_type(_p(request)["thingTypeName"])
    return {}


# -- thing groups ----------------------------------------------------------------------
async def create_thing_group(ctx, request):
    p = _p(request)
    d = ctx.registry.create_thing_group(p["thingGroupName"], p.get("parentGroupName"), p.get("thingGroupProperties"))
    await ctx.changed("thing_group", "created", p["thingGroupName"])
    return d


def describe_thing_group(ctx, request):
    return ctx.registry.describe_thing_group(_p(request)["thingGroupName"])


def list_thing_groups(ctx, request):
    p = _p(request)
    groups, nxt = ctx.registry.list_thing_groups(
        parent=p.get("parentGroup"), name_prefix=p.get("namePrefixFilter"), recursive=p.get("recursive"),
        token=p.get("nextToken"), max_results=p.get("maxResults"))
    return _listing("thingGroups", groups, nxt)


async def delete_thing_group(ctx, request):
    p = _p(request)
    ctx.registry.delete_thing_group(p["thingGroupName"])
    await ctx.changed("thing_group", "deleted", p["thingGroupName"])
    return {}


def _refuse_dynamic(ctx, p) -> None:
    """AWS refuses adding to / removing from a dynamic thing group by hand."""
    index = ctx.extras.get("index")
    group = p.get("thingGroupName") or (p.get("thingGroupArn") or "").split(":thinggroup/", 1)[-1]
    if index is not None and group and index.store.dynamic_group(group) is not None:
        raise AwsError("InvalidRequestException",
                       f"{group} is a dynamic thing group: its members are the things its query matches "
                       "(change the query with UpdateDynamicThingGroup)")


async def add_thing_to_group(ctx, request):
    p = _p(request)
    _refuse_dynamic(ctx, p)
    ctx.registry.add_thing_to_group(p.get("thingGroupName"), p.get("thingGroupArn"), p.get("thingName"), p.get("thingArn"))
    await ctx.changed("thing_group", "updated", p.get("thingGroupName") or p.get("thingGroupArn"),
                      thing=p.get("thingName") or p.get("thingArn"), member="added")
    return {}


async def remove_thing_from_group(ctx, request):
    p = _p(request)
    _refuse_dynamic(ctx, p)
    ctx.registry.remove_thing_from_group(p.get("thingGroupName"), p.get("thingGroupArn"), p.get("thingName"),
                                         p.get("thingArn"))
    await ctx.changed("thing_group", "updated", p.get("thingGroupName") or p.get("thingGroupArn"),
                      thing=p.get("thingName") or p.get("thingArn"), member="removed")
    return {}


async def update_thing_group(ctx, request):
    p = _p(request)
    version = ctx.registry.update_thing_group(p["thingGroupName"], p.get("thingGroupProperties"),
                                              p.get("expectedVersion"))
    await ctx.changed("thing_group", "updated", p["thingGroupName"], properties=True)
    return {"version": version}


def list_groups_for_thing(ctx, request):
    p = _p(request)
    groups = [{"groupName": g, "groupArn": ctx.registry.arn("thinggroup", g)}
              for g in ctx.registry.direct_groups_of_thing(p["thingName"])]
    page, nxt = _page(groups, p.get("nextToken"), p.get("maxResults"), 25)
    return _listing("thingGroups", page, nxt)


def list_things_in_group(ctx, request):
    p = _p(request)
    names = ctx.registry.things_in_group(p["thingGroupName"], bool(p.get("recursive")))
    page, nxt = _page(names, p.get("nextToken"), p.get("maxResults"), 50)
    return _listing("things", page, nxt)


# -- certificates ----------------------------------------------------------------------
def _store(ctx, issued, active: bool) -> None:
    ctx.registry.add_certificate(issued.certificate_id, issued.certificate_pem, issued.common_name, issued.serial,
                                 "ACTIVE" if active else "INACTIVE", None, issued.not_after.timestamp())


async def create_keys_and_certificate(ctx, request):
    p = _p(request)
    import asyncio

    # RSA key generation takes 50-500 ms: keep the event loop (broker log, services) free
    issued, public_pem, private_pem = await asyncio.to_thread(ctx.ca.create_keys_and_certificate)
    _store(ctx, issued, bool(p.get("setAsActive")))
    await ctx.changed("certificate", "created", issued.certificate_id)
    return {"certificateArn": ctx.registry.arn("cert", issued.certificate_id), "certificateId": issued.certificate_id,
            "certificatePem": issued.certificate_pem, "keyPair": {"PublicKey": public_pem, "PrivateKey": private_pem}}


async def create_certificate_from_csr(ctx, request):
    p = _p(request)
    try:
        import asyncio

        issued = await asyncio.to_thread(ctx.ca.sign_csr, p["certificateSigningRequest"])
    except BadCsrError as exc:
        raise invalid(str(exc)) from exc
    _store(ctx, issued, bool(p.get("setAsActive")))
    await ctx.changed("certificate", "created", issued.certificate_id)
    return {"certificateArn": ctx.registry.arn("cert", issued.certificate_id), "certificateId": issued.certificate_id,
            "certificatePem": issued.certificate_pem}


def _cert_id(p) -> str:
    cid = p["certificateId"]
    if len(cid) != 64 or any(c not in "0123456789abcdef" for c in cid):
        raise invalid(f"certificateId must be 64 lowercase hex characters, not {cid!r}")
    return cid


def describe_certificate(ctx, request):
    from cryptography import x509

    from fleetdesk.sandbox.ca_registry import CaRegistry

    desc = ctx.registry.describe_certificate(_cert_id(_p(request)))
    ca = CaRegistry(ctx.state_dir, ctx.region, ctx.account_id).issuer_of(
        x509.load_pem_x509_certificate(desc["certificatePem"].encode()))
    if ca is not None:  # as AWS: the registered CA that signed it (a JITP or RegisterCertificate one)
        desc["caCertificateId"] = ca["certificateId"]
    return {"certificateDescription": desc}


def list_certificates(ctx, request):
    p = _p(request)
    certs, nxt = ctx.registry.list_certificates(marker=p.get("marker"), page_size=p.get("pageSize"),
                                                ascending=bool(p.get("ascendingOrder")))
    return _listing("certificates", certs, nxt, "nextMarker")


async def update_certificate(ctx, request):
    p = _p(request)
    cid = _cert_id(p)
    ctx.registry.update_certificate(cid, p["newStatus"])
    await ctx.changed("certificate", "updated", cid, status=p["newStatus"])
    return {}


async def delete_certificate(ctx, request):
    p = _p(request)
    cid = _cert_id(p)
    ctx.registry.delete_certificate(cid, bool(p.get("forceDelete")))
    await ctx.changed("certificate", "deleted", cid)
    return {}


# -- policies --------------------------------------------------------------------------
async def create_policy(ctx, request):
    p = _p(request)
    d = ctx.registry.policies.create_policy(p["policyName"], p["policyDocument"])
    await ctx.changed("policy", "created", p["policyName"])
    return d


async def create_policy_version(ctx, request):
    p = _p(request)
    d = ctx.registry.policies.create_policy_version(p["policyName"], p["policyDocument"], bool(p.get("setAsDefault")))
    await ctx.changed("policy", "updated", p["policyName"])
    return d


def list_policy_versions(ctx, request):
    return {"policyVersions": ctx.registry.policies.list_policy_versions(_p(request)["policyName"])}


def get_policy_version(ctx, request):
    p = _p(request)
    return ctx.registry.policies.get_policy_version(p["policyName"], p["policyVersionId"])


async def set_default_policy_version(ctx, request):
    p = _p(request)
    ctx.registry.policies.set_default_policy_version(p["policyName"], p["policyVersionId"])
    await ctx.changed("policy", "updated", p["policyName"])
    return {}


def delete_policy_version(ctx, request):
    p = _p(request)
    ctx.registry.policies.delete_policy_version(p["policyName"], p["policyVersionId"])
    return {}


def get_policy(ctx, request):
    return ctx.registry.policies.get_policy(_p(request)["policyName"])


def list_policies(ctx, request):
    p = _p(request)
    pols, nxt = _page(ctx.registry.policies.list_policies(p.get("ascendingOrder", True)), p.get("marker"),
                      p.get("pageSize"), 25)
    return _listing("policies", pols, nxt, "nextMarker")


async def delete_policy(ctx, request):
    p = _p(request)
    ctx.registry.policies.delete_policy(p["policyName"])
    await ctx.changed("policy", "deleted", p["policyName"])
    return {}


def _linking(call: str, args: tuple[str, str], kind: str, event: str, subject: str, **fields: str):
    """An attach/detach handler: ``registry.<call>(*args)``, then the change event for ``subject``
    (``fields``: event field -> request member)."""

    async def handler(ctx, request):
        p = _p(request)
        getattr(ctx.registry, call)(*(p[a] for a in args))
        await ctx.changed(kind, event, p[subject], **{k: p[v] for k, v in fields.items()})
        return {}

    handler.__name__ = call
    return handler


attach_policy = _linking("attach_policy", ("policyName", "target"), "policy", "attached", "policyName", target="target")
detach_policy = _linking("detach_policy", ("policyName", "target"), "policy", "detached", "policyName", target="target")


def list_attached_policies(ctx, request):
    p = _p(request)
    pols, nxt = _page(ctx.registry.attached_policies(p["target"], bool(p.get("recursive"))),
                      p.get("marker"), p.get("pageSize"), 25)
    return _listing("policies", pols, nxt, "nextMarker")


def list_policy_targets(ctx, request):
    p = _p(request)
    return {"targets": ctx.registry.policy_targets(p["policyName"])}


# -- principals ------------------------------------------------------------------------
attach_thing_principal = _linking("attach_thing_principal", ("thingName", "principal"), "principal", "attached",
                                  "principal", thing="thingName")
detach_thing_principal = _linking("detach_thing_principal", ("thingName", "principal"), "principal", "detached",
                                  "principal", thing="thingName")


def list_thing_principals(ctx, request):
    p = _p(request)
    page, nxt = _page(ctx.registry.thing_principals(p["thingName"]), p.get("nextToken"), p.get("maxResults"), 25)
    return _listing("principals", page, nxt)


def list_principal_things(ctx, request):
    p = _p(request)
    page, nxt = _page(ctx.registry.principal_things(p["principal"]), p.get("nextToken"), p.get("maxResults"), 25)
    return _listing("things", page, nxt)


def describe_endpoint(ctx, request):
    endpoint_type = _p(request).get("endpointType") or "iot:Data"
    if endpoint_type not in ("iot:Data", "iot:Data-ATS", "iot:CredentialProvider", "iot:Jobs"):
        raise AwsError("InvalidRequestException", f"unknown endpointType {endpoint_type!r}")
    return {"endpointAddress": ctx.mqtt_host}


_OPERATIONS = {
    "CreateThing": create_thing, "DescribeThing": describe_thing, "ListThings": list_things,
    "UpdateThing": update_thing, "DeleteThing": delete_thing,
    "CreateThingGroup": create_thing_group, "DescribeThingGroup": describe_thing_group,
    "ListThingGroups": list_thing_groups, "DeleteThingGroup": delete_thing_group,
    "AddThingToThingGroup": add_thing_to_group, "RemoveThingFromThingGroup": remove_thing_from_group,
    "ListThingsInThingGroup": list_things_in_group, "UpdateThingGroup": update_thing_group,
    "ListThingGroupsForThing": list_groups_for_thing,
    "CreateThingType": create_thing_type, "DescribeThingType": describe_thing_type, "ListThingTypes": list_thing_types,
    "DeprecateThingType": deprecate_thing_type, "DeleteThingType": delete_thing_type,
    "CreateKeysAndCertificate": create_keys_and_certificate, "CreateCertificateFromCsr": create_certificate_from_csr,
    "DescribeCertificate": describe_certificate, "ListCertificates": list_certificates,
    "UpdateCertificate": update_certificate, "DeleteCertificate": delete_certificate,
    "CreatePolicy": create_policy, "CreatePolicyVersion": create_policy_version, "GetPolicy": get_policy,
    "ListPolicies": list_policies, "DeletePolicy": delete_policy,
    "ListPolicyVersions": list_policy_versions, "GetPolicyVersion": get_policy_version,
    "SetDefaultPolicyVersion": set_default_policy_version, "DeletePolicyVersion": delete_policy_version,
    "AttachPolicy": attach_policy, "DetachPolicy": detach_policy, "ListAttachedPolicies": list_attached_policies,
    "ListTargetsForPolicy": list_policy_targets,
    "AttachThingPrincipal": attach_thing_principal, "DetachThingPrincipal": detach_thing_principal,
    "ListThingPrincipals": list_thing_principals, "ListPrincipalThings": list_principal_things,
    "DescribeEndpoint": describe_endpoint,
}

ROUTES = model_routes("iot", _OPERATIONS)
