"""A device's cloud identity: thing + certificate + key + thing-scoped policy, via boto3 ``iot``.

Works the same against AWS IoT and the sandbox (boto3 client made by the caller).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from fleetdesk.errors import CloudError
from fleetdesk.paths import RESOURCES_DIR

THING_POLICY_FILE = RESOURCES_DIR / "policies" / "thing-policy.json"
DEFAULT_POLICY_NAME = "fleetdesk-thing-policy"


@dataclass(frozen=True)
class DeviceIdentity:
    """What a device needs to connect as its thing (keep ``private_key_pem`` secret).

    Attributes:
        thing_name: the thing (and the MQTT client id).
        certificate_id: 64 hex characters.
        certificate_arn: ``arn:aws:iot:<region>:<account>:cert/<id>``.
        certificate_pem: the device certificate.
        private_key_pem: its private key (empty when an existing certificate was reused).
    """

    thing_name: str
    certificate_id: str
    certificate_arn: str
    certificate_pem: str
    private_key_pem: str

    def __repr__(self) -> str:  # never print the key
        return f"DeviceIdentity(thing_name={self.thing_name!r}, certificate_id={self.certificate_id!r})"


def thing_policy_document() -> str:
    """The thing-scoped policy template (uses ``${iot:Connection.Thing.ThingName}``)."""
    return json.dumps(json.loads(THING_POLICY_FILE.read_text()))


def _code(exc) -> str:
    return getattr(exc, "response", {}).get("Error", {}).get("Code", "")


def ensure_policy(iot_client, policy_name: str = DEFAULT_POLICY_NAME, document: str | None = None) -> str:
    """Create the policy if it does not exist. Returns its ARN."""
    from botocore.exceptions import ClientError

    try:
        return iot_client.get_policy(policyName=policy_name)["policyArn"]
    except ClientError as exc:
        if _code(exc) != "ResourceNotFoundException":
            raise
    try:
        return iot_client.create_policy(policyName=policy_name, policyDocument=document or thing_policy_document())[
            "policyArn"]
    except ClientError as exc:
        if _code(exc) == "ResourceAlreadyExistsException":  # created meanwhile by someone else
            return iot_client.get_policy(policyName=policy_name)["policyArn"]
        raise


def create_device_identity(iot_client, thing_name: str, *, policy_name: str | None = None,
                           attributes: dict | None = None, on_certificate=None) -> DeviceIdentity:
    """Create (or reuse) the thing, a new key pair + certificate and the thing policy; attach them.

    Args:
        iot_client: ``boto3.client("iot", ...)`` (the sandbox's ``SandboxInfo.boto3_kwargs()`` or AWS).
        thing_name: the thing to create or reuse (also the device's MQTT client id).
        policy_name: the policy to attach (made from resources/policies/thing-policy.json if
            missing); default "fleetdesk-thing-policy".
        attributes: thing attributes (str -> str) for a new thing, merged into an existing one.
        on_certificate: called with the new certificate's id as soon as it exists (before the
            attachments), so a caller can record it before anything else can fail or crash.

    Returns:
        The new identity (an ACTIVE certificate with its private key).

    Raises:
        CloudError: AWS (or the sandbox) refused a step; the message names it.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    policy_name = policy_name or DEFAULT_POLICY_NAME
    step = "create the thing"
    try:
        attrs = {str(k): str(v) for k, v in (attributes or {}).items()}
        try:
            iot_client.describe_thing(thingName=thing_name)
            if attrs:
                iot_client.update_thing(thingName=thing_name,
                                        attributePayload={"attributes": attrs, "merge": True})
        except ClientError as exc:
            if _code(exc) != "ResourceNotFoundException":
                raise
            kwargs = {"attributePayload": {"attributes": attrs}} if attrs else {}
            iot_client.create_thing(thingName=thing_name, **kwargs)
        step = f"create the policy {policy_name}"
        ensure_policy(iot_client, policy_name)
        step = "create keys and certificate"
        cert = iot_client.create_keys_and_certificate(setAsActive=True)
        if on_certificate is not None:
            on_certificate(cert["certificateId"])
        step = "attach the policy to the certificate"
        iot_client.attach_policy(policyName=policy_name, target=cert["certificateArn"])
        step = "attach the certificate to the thing"
        iot_client.attach_thing_principal(thingName=thing_name, principal=cert["certificateArn"])
    except ClientError as exc:
        raise CloudError(f"could not {step} for {thing_name}: {exc}",
                         "check the credentials and that the endpoint is the right account/region") from exc
    except BotoCoreError as exc:
        raise CloudError(f"could not {step} for {thing_name}: {exc}",
                         "is the sandbox running / the AWS endpoint reachable?") from exc
    return DeviceIdentity(thing_name, cert["certificateId"], cert["certificateArn"], cert["certificatePem"],
                          cert["keyPair"]["PrivateKey"])
