"""Fleet provisioning by claim: the MQTT side (awsiotsdk's IotIdentityClientV2 works unchanged).

Topics: ``$aws/certificates/create/json`` (CreateKeysAndCertificate),
``$aws/certificates/create-from-csr/json`` (CreateCertificateFromCsr) and
``$aws/provisioning-templates/<name>/provision/json`` (RegisterThing), each answered on
``/accepted`` or ``/rejected`` ({statusCode, errorCode, errorMessage}). New certificates
are INACTIVE until a template activates them; the ownership token proves the caller got
the certificate from us (valid one hour). Templates (AWS's JSON format: Parameters,
Resources of type AWS::IoT::Thing / Certificate / Policy, intrinsic functions Ref,
Fn::Join, Fn::Sub, Fn::Select, Fn::Split: :mod:`fleetdesk.cloud.templates`) are stored by :mod:`api_provisioning` and
applied by :func:`apply_template`.

:func:`setup_claim` prepares a claim certificate, its policy and the default template with
boto3 (works against AWS too, given a real provisioning role ARN).
"""

from __future__ import annotations

import json
import logging
import secrets
import sys
import time
from pathlib import Path
from typing import Any

from fleetdesk.cloud.templates import CLAIM_POLICY, DEFAULT_TEMPLATE, THING_POLICY, TemplateError, evaluate
from fleetdesk.paths import RESOURCES_DIR

log = logging.getLogger(__name__)

TOKEN_TTL_S = 3600
HOOK_FUNCTION = "fleetdesk-pre-provisioning-hook"
FILTERS = [
    "$aws/certificates/create/json",
    "$aws/certificates/create-from-csr/json",
    "$aws/provisioning-templates/+/provision/json",
]


class ProvisioningError(Exception):
    """A refused provisioning request ({statusCode, errorCode, errorMessage})."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def payload(self) -> dict:
        return {"statusCode": self.status, "errorCode": self.code, "errorMessage": self.message}


# ---- templates --------------------------------------------------------------------------
class TemplateStore:
    """Provisioning templates in ``<state>/provisioning-templates.json``."""

    def __init__(self, state_dir: Path) -> None:
        self.path = Path(state_dir) / "provisioning-templates.json"

    def all(self) -> dict[str, dict]:
        if not self.path.exists():
            return {}
        return json.loads(self.path.read_text())

    def get(self, name: str) -> dict | None:
        return self.all().get(name)

    def put(self, template: dict) -> None:
        data = self.all()
        data[template["templateName"]] = template
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1))
        tmp.replace(self.path)

    def delete(self, name: str) -> bool:
        data = self.all()
        if data.pop(name, None) is None:
            return False
        self.path.write_text(json.dumps(data, indent=1))
        return True


def _evaluate(node: Any, params: dict) -> Any:
    """Resolve intrinsic functions in a template value (a missing parameter is a 400)."""
    try:
        return evaluate(node, params)
    except TemplateError as exc:
        raise ProvisioningError(400, "InvalidParameters", exc.message) from None


def validate_template_body(body: str) -> dict:
    """Parse and sanity-check a template body (raises ValueError with the reason)."""
    doc = json.loads(body)
    if not isinstance(doc, dict) or not isinstance(doc.get("Resources"), dict):
        raise ValueError("the template body needs a Resources object")
    kinds = {r.get("Type") for r in doc["Resources"].values() if isinstance(r, dict)}
    unknown = kinds - {"AWS::IoT::Thing", "AWS::IoT::Certificate", "AWS::IoT::Policy"}
    if unknown:
        raise ValueError(f"unsupported resource types: {sorted(map(str, unknown))}")
    return doc


async def apply_template(ctx: Any, template: dict, params: dict, cert_id: str) -> dict:
    """Run a template for a certificate: thing, groups, certificate status, policy, attachments.

    Returns:
        {"thingName", "deviceConfiguration"}.

    Raises:
        ProvisioningError: bad parameters or a registry refusal.
    """
    doc = validate_template_body(template["templateBody"])
    reg = ctx.registry
    declared = doc.get("Parameters") or {}
    values: dict[str, Any] = {}
    for name, spec in declared.items():
        if name in params:
            values[name] = params[name]
        elif isinstance(spec, dict) and "Default" in spec:
            values[name] = spec["Default"]
    values.update({k: v for k, v in params.items()})
    view = reg.certificate_view(cert_id)
    values["AWS::IoT::Certificate::Id"] = cert_id
    values["AWS::IoT::Certificate::CommonName"] = getattr(view, "common_name", "")
    thing_name = None
    cert_arn = reg.arn("cert", cert_id)
    # resolve everything first, so a bad parameter or a missing policy changes nothing
    resolved = [(res, res.get("Type"), _evaluate(res.get("Properties") or {}, values))
                for res in doc["Resources"].values()]
    for _, kind, props in resolved:
        if kind == "AWS::IoT::Thing" and not props.get("ThingName"):
            raise ProvisioningError(400, "InvalidParameters", "the template gives no ThingName")
        if kind == "AWS::IoT::Policy" and not props.get("PolicyDocument"):
            if not props.get("PolicyName"):
                raise ProvisioningError(400, "InvalidParameters", "a Policy resource needs PolicyName or PolicyDocument")
            try:
                reg.policies.get_policy(props["PolicyName"])
            except Exception as exc:  # AwsError not found
                raise ProvisioningError(400, "InvalidParameters", f"policy {props['PolicyName']} does not exist") from exc
    try:
        for res, kind, props in resolved:
            if kind == "AWS::IoT::Thing":
                thing_name = props.get("ThingName")
                if not thing_name:
                    raise ProvisioningError(400, "InvalidParameters", "the template gives no ThingName")
                attrs = {k: str(v) for k, v in (props.get("AttributePayload") or {}).items()}
                try:
                    reg.describe_thing(thing_name)
                    if (res.get("OverrideSettings") or {}).get("AttributePayload") in ("MERGE", "REPLACE"):
                        reg.update_thing(thing_name, attribute_payload={"attributes": attrs, "merge": True})
                except Exception:  # noqa: BLE001 - not found -> create
                    reg.create_thing(thing_name, props.get("ThingTypeName"), attrs)
                    await ctx.changed("thing", "created", thing_name)
                for group in props.get("ThingGroups") or []:
                    reg.add_thing_to_group(group=group, thing=thing_name)
                    await ctx.changed("thing_group", "updated", group, thing=thing_name, member="added")
            elif kind == "AWS::IoT::Certificate":
                status = props.get("Status", "ACTIVE")
                reg.update_certificate(cert_id, status)
                await ctx.changed("certificate", "updated", cert_id, status=status)
        for _res, kind, props in resolved:
            if kind != "AWS::IoT::Policy":
                continue
            name = props.get("PolicyName")
            if props.get("PolicyDocument"):
                name = name or f"{template['templateName']}-{thing_name or cert_id[:12]}"
                text = props["PolicyDocument"]
                text = text if isinstance(text, str) else json.dumps(text)
                try:
                    reg.policies.get_policy(name)
                except Exception:  # noqa: BLE001 - create it
                    reg.policies.create_policy(name, text)
                    await ctx.changed("policy", "created", name)
            if not name:
                raise ProvisioningError(400, "InvalidParameters", "a Policy resource needs PolicyName or PolicyDocument")
            reg.policies.get_policy(name)
            reg.attach_policy(name, cert_arn)
            await ctx.changed("policy", "attached", name, target=cert_arn)
        if thing_name:
            reg.attach_thing_principal(thing_name, cert_arn)
            await ctx.changed("principal", "attached", cert_arn, thing=thing_name)
    except ProvisioningError:
        raise
    except Exception as exc:  # registry AwsError etc.
        raise ProvisioningError(400, getattr(exc, "code", "InvalidRequest"), getattr(exc, "message", str(exc))) from exc
    return {"thingName": thing_name, "deviceConfiguration": doc.get("DeviceConfiguration") or {}}


# ---- the MQTT service ----------------------------------------------------------------------
class ProvisioningService:
    """Answers the identity topics for one sandbox."""

    def __init__(self, ctx: Any, publish) -> None:
        self.ctx = ctx
        self._publish = publish
        self.templates = TemplateStore(ctx.state_dir)
        self.tokens: dict[str, tuple[str, float]] = {}

    def _store_cert(self, issued) -> None:
        self.ctx.registry.add_certificate(issued.certificate_id, issued.certificate_pem, issued.common_name,
                                          issued.serial, "INACTIVE", None, issued.not_after.timestamp())

    def _token(self, cert_id: str) -> str:
        now = time.time()
        self.tokens = {t: v for t, v in self.tokens.items() if v[1] > now}
        token = secrets.token_urlsafe(48)
        self.tokens[token] = (cert_id, now + TOKEN_TTL_S)
        return token

    async def on_message(self, topic: str, payload: bytes) -> None:
        try:
            try:
                req = json.loads(payload) if payload.strip() else {}
            except ValueError:
                raise ProvisioningError(400, "InvalidPayload", "The payload is not valid JSON.") from None
            if not isinstance(req, dict):
                raise ProvisioningError(400, "InvalidPayload", "The payload must be a JSON object.")
            reply = await self._handle(topic, req)
            self._publish(f"{topic}/accepted", reply)
        except ProvisioningError as exc:
            self._publish(f"{topic}/rejected", exc.payload())
        except Exception as exc:  # answer, never crash
            log.exception("provisioning %s failed", topic)
            self._publish(f"{topic}/rejected", {"statusCode": 500, "errorCode": "InternalError",
                                                 "errorMessage": f"internal error: {exc!r}"})

    async def _handle(self, topic: str, req: dict) -> dict:
        ca = self.ctx.ca
        if topic == "$aws/certificates/create/json":
            issued, _public, private = ca.create_keys_and_certificate()
            self._store_cert(issued)
            await self.ctx.changed("certificate", "created", issued.certificate_id)
            return {"certificateId": issued.certificate_id, "certificatePem": issued.certificate_pem,
                    "privateKey": private, "certificateOwnershipToken": self._token(issued.certificate_id)}
        if topic == "$aws/certificates/create-from-csr/json":
            csr = req.get("certificateSigningRequest")
            if not isinstance(csr, str) or not csr.strip():
                raise ProvisioningError(400, "InvalidCSR", "certificateSigningRequest is required.")
            try:
                issued = ca.sign_csr(csr)
            except Exception as exc:  # BadCsrError
                raise ProvisioningError(400, "InvalidCSR", str(exc)) from exc
            self._store_cert(issued)
            await self.ctx.changed("certificate", "created", issued.certificate_id)
            return {"certificateId": issued.certificate_id, "certificatePem": issued.certificate_pem,
                    "certificateOwnershipToken": self._token(issued.certificate_id)}
        parts = topic.split("/")
        if len(parts) == 5 and parts[1] == "provisioning-templates":
            name = parts[2]
            template = self.templates.get(name)
            if template is None:
                raise ProvisioningError(404, "ResourceNotFound", f"Template {name} does not exist.")
            if not template.get("enabled", False):
                raise ProvisioningError(400, "TemplateDisabled", f"Template {name} is disabled.")
            entry = self.tokens.get(str(req.get("certificateOwnershipToken")))
            if entry is None or entry[1] < time.time():
                raise ProvisioningError(400, "InvalidCertificateOwnershipToken",
                                        "The certificate ownership token is invalid or expired.")
            params = req.get("parameters") or {}
            if not isinstance(params, dict):
                raise ProvisioningError(400, "InvalidParameters", "parameters must be an object.")
            params = {k: str(v) for k, v in params.items()}
            if template.get("preProvisioningHook") and "SerialNumber" in params:  # else: InvalidParameters below
                self._run_hook(template, params, entry[0])
            result = await apply_template(self.ctx, template, params, entry[0])
            self.tokens.pop(str(req.get("certificateOwnershipToken")), None)
            authorizer = getattr(self.ctx, "authorizer", None)
            if authorizer is not None and hasattr(authorizer, "sync"):
                await authorizer.sync()
            return result
        raise ProvisioningError(400, "InvalidTopic", f"unknown topic {topic}")

    def _run_hook(self, template: dict, params: dict, cert_id: str) -> None:
        """The template's pre-provisioning hook, run by the sandbox itself: the same
        :func:`decide` the shipped Lambda runs (resources/provisioning/pre_provisioning_hook.py),
        with registry and DynamoDB lookups instead of boto3 calls.

        Raises:
            ProvisioningError: 403 AccessDenied when the hook refuses.
        """
        hook = load_hook()
        reg = self.ctx.registry

        def active_certificates(thing: str) -> list[str]:
            out = []
            try:
                principals = reg.thing_principals(thing)
            except Exception:  # noqa: BLE001 - no such thing
                return []
            for arn in principals:
                cid = reg._cert_id_from_arn(arn)
                if cid and reg.describe_certificate(cid).get("status") == "ACTIVE":
                    out.append(cid)
            return out

        def serial_issued(serial: str) -> bool | None:
            store = self.ctx.extras.get("dynamodb")
            if store is None:
                return None
            try:
                return store.get_item(hook.ISSUED_TABLE, {"serial": {"S": serial}}) is not None
            except Exception:  # noqa: BLE001 - DynamoError ResourceNotFoundException: no table
                return None

        event = {"parameters": params, "certificateId": cert_id, "templateArn": template.get("templateArn", ""),
                 "claimCertificateId": ""}
        answer = hook.decide(event, active_certificates=active_certificates, serial_issued=serial_issued)
        if not answer["allowProvisioning"]:
            print(f"sandbox: pre-provisioning hook refused {template.get('templateName')}: {answer['reason']}",
                  file=sys.stderr, flush=True)
            raise ProvisioningError(403, "AccessDenied", f"The pre-provisioning hook refused: {answer['reason']}")


def load_hook():
    """The shipped pre-provisioning hook module (resources/provisioning/pre_provisioning_hook.py)."""
    import importlib.util

    path = RESOURCES_DIR / "provisioning" / "pre_provisioning_hook.py"
    spec = importlib.util.spec_from_file_location("fleetdesk_pre_provisioning_hook", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def shipped_hook(iot: Any) -> dict:
    """The ``preProvisioningHook`` argument for the shipped template (the Lambda of README's AWS setup)."""
    account = iot.get_policy(policyName=CLAIM_POLICY)["policyArn"].split(":")[4]
    return {"targetArn": hook_arn(iot.meta.region_name, account), "payloadVersion": "2020-04-01"}


def hook_arn(region: str, account: str) -> str:
    """The Lambda ARN the shipped template names as its pre-provisioning hook."""
    return f"arn:aws:lambda:{region}:{account}:function:{HOOK_FUNCTION}"


class _Running:
    def __init__(self, link) -> None:
        self.link = link

    async def stop(self) -> None:
        await self.link.stop()


async def start(ctx: Any) -> _Running:
    """Start the claim-provisioning responder (``ctx.extras["provisioning"]``)."""
    from fleetdesk.sandbox.mqtt_link import MqttLink

    box: dict[str, MqttLink] = {}
    service = ProvisioningService(ctx, lambda t, p: box["link"].publish(t, p))
    link = MqttLink(ctx.internal_mqtt, "provisioning", FILTERS, service.on_message)
    box["link"] = link
    await link.start()
    ctx.extras["provisioning"] = service
    return _Running(link)


# ---- operator helper (boto3) ----------------------------------------------------------------
def setup_claim(iot: Any, *, template_name: str = DEFAULT_TEMPLATE,
                role_arn: str = "arn:aws:iam::000000000000:role/fleetdesk-provisioning") -> dict:
    """Create (or reuse) the policies and template, and a new claim certificate.

    Args:
        iot: a boto3 ``iot`` client (sandbox or AWS).
        template_name: the provisioning template to create if missing.
        role_arn: the template's provisioning role (any ARN in the sandbox).

    Returns:
        {"certificateId", "certificatePem", "privateKey", "templateName"}.
    """
    from botocore.exceptions import ClientError

    def ensure_policy(name: str, file: Path, replace: tuple[str, str] | None = None) -> None:
        text = json.dumps(json.loads(file.read_text()))
        if replace:
            text = text.replace(*replace)
        try:
            iot.create_policy(policyName=name, policyDocument=text)
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ResourceAlreadyExistsException":
                raise

    ensure_policy(CLAIM_POLICY, RESOURCES_DIR / "policies" / "claim-policy.json",
                  (f"provisioning-templates/{DEFAULT_TEMPLATE}/", f"provisioning-templates/{template_name}/"))
    ensure_policy(THING_POLICY, RESOURCES_DIR / "policies" / "thing-policy.json")
    body = (RESOURCES_DIR / "provisioning" / f"{DEFAULT_TEMPLATE}.json").read_text()
    try:
        iot.create_provisioning_template(templateName=template_name, templateBody=json.dumps(json.loads(body)),
                                         provisioningRoleArn=role_arn, enabled=True,
                                         preProvisioningHook=shipped_hook(iot))
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ResourceAlreadyExistsException":
            raise
    cert = iot.create_keys_and_certificate(setAsActive=True)
    iot.attach_policy(policyName=CLAIM_POLICY, target=cert["certificateArn"])
    return {"certificateId": cert["certificateId"], "certificatePem": cert["certificatePem"],
            "privateKey": cert["keyPair"]["PrivateKey"], "templateName": template_name}

