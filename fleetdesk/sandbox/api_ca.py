"""Control-plane routes for registered CA certificates (boto3 ``iot``): GetRegistrationCode,
RegisterCACertificate, DescribeCACertificate, UpdateCACertificate, ListCACertificates,
DeleteCACertificate (fleetdesk.sandbox.ca_registry keeps them)."""

from __future__ import annotations

from fleetdesk.sandbox.ca_registry import CaRegistry
from fleetdesk.sandbox.control_plane import list_page, model_routes


def _cas(ctx) -> CaRegistry:
    return CaRegistry(ctx.state_dir, ctx.region, ctx.account_id)


def _id(p) -> str:
    return p.get("certificateId") or p.get("caCertificateId")  # the model's member for {caCertificateId}


def get_registration_code(ctx, request):
    return {"registrationCode": _cas(ctx).registration_code()}


def register_ca_certificate(ctx, request):
    p = request.params
    return _cas(ctx).register(p["caCertificate"], p.get("verificationCertificate"),
                              set_active=bool(p.get("setAsActive")), allow_auto=bool(p.get("allowAutoRegistration")),
                              registration_config=p.get("registrationConfig"),
                              mode=p.get("certificateMode") or "DEFAULT")


def describe_ca_certificate(ctx, request):
    return _cas(ctx).describe(_id(request.params))


def update_ca_certificate(ctx, request):
    p = request.params
    _cas(ctx).update(_id(p), status=p.get("newStatus"), auto=p.get("newAutoRegistrationStatus"),
                     registration_config=p.get("registrationConfig"), remove_auto=bool(p.get("removeAutoRegistration")))
    return {}


def list_ca_certificates(ctx, request):
    p = request.params
    items = _cas(ctx).list()
    if not p.get("ascendingOrder"):
        items.reverse()
    page = list_page(items, {"nextToken": p.get("marker"), "maxResults": p.get("pageSize")}, "certificates")
    if "nextToken" in page:
        page["nextMarker"] = page.pop("nextToken")
    return page


def delete_ca_certificate(ctx, request):
    _cas(ctx).delete(_id(request.params))
    return {}


_OPERATIONS = {
    "GetRegistrationCode": get_registration_code, "RegisterCACertificate": register_ca_certificate,
    "DescribeCACertificate": describe_ca_certificate, "UpdateCACertificate": update_ca_certificate,
    "ListCACertificates": list_ca_certificates, "DeleteCACertificate": delete_ca_certificate,
}

ROUTES = model_routes("iot", _OPERATIONS)
