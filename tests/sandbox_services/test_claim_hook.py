"""Claim provisioning cannot hijack a device: the shipped template's pre-provisioning hook, run by
the sandbox as AWS runs the Lambda (real awsiotsdk IotIdentityClientV2 over mTLS)."""

from __future__ import annotations

import uuid

import boto3
import pytest
from awsiot import V2ServiceException, iotidentity

from fleetdesk.sandbox.provisioning import load_hook, setup_claim

from .conftest import mtls_builder, result, rr_options

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def claim(sandbox):
    return setup_claim(boto3.client("iot", **sandbox.boto3_kwargs()))


def _register(sandbox, claim, clients, serial: str):
    """CreateKeysAndCertificate + RegisterThing with the claim certificate; (new cert id, reply or error)."""
    dev = clients(mtls_builder(sandbox, claim["certificatePem"], claim["privateKey"], f"claim-{uuid.uuid4().hex[:8]}"))
    assert dev.connect(), dev.failure
    ident = iotidentity.IotIdentityClientV2(dev.client, rr_options())
    created = result(ident.create_keys_and_certificate(iotidentity.CreateKeysAndCertificateRequest()))
    try:
        return created.certificate_id, result(ident.register_thing(iotidentity.RegisterThingRequest(
            template_name=claim["templateName"], certificate_ownership_token=created.certificate_ownership_token,
            parameters={"SerialNumber": serial, "MacAddress": serial})))
    except V2ServiceException as exc:
        return created.certificate_id, exc
    finally:
        dev.stop()


def test_shipped_template_names_the_hook(iot, claim):
    hook = iot.describe_provisioning_template(templateName=claim["templateName"])["preProvisioningHook"]
    assert hook["targetArn"].endswith(":function:fleetdesk-pre-provisioning-hook")


def test_claim_cannot_reregister_a_thing_with_an_active_certificate(sandbox, iot, claim, clients):
    serial = uuid.uuid4().hex[:12]
    first_cert, reg = _register(sandbox, claim, clients, serial)
    assert reg.thing_name == f"esp-{serial}"
    # the attack: another claim run for the same serial, to take over esp-<serial>
    second_cert, refused = _register(sandbox, claim, clients, serial)
    assert isinstance(refused, V2ServiceException), refused
    assert refused.modeled_error.error_code == "AccessDenied"
    assert "already has an ACTIVE certificate" in refused.modeled_error.error_message
    principals = iot.list_thing_principals(thingName=f"esp-{serial}")["principals"]
    assert [p.rsplit("/", 1)[1] for p in principals] == [first_cert]
    assert iot.describe_certificate(certificateId=second_cert)["certificateDescription"]["status"] == "INACTIVE"
    # re-provisioning on purpose: deactivate the old certificate first
    iot.update_certificate(certificateId=first_cert, newStatus="INACTIVE")
    _, again = _register(sandbox, claim, clients, serial)
    assert again.thing_name == f"esp-{serial}"


def test_only_issued_serials_when_the_table_exists(sandbox, iot, claim, clients):
    ddb = boto3.client("dynamodb", **sandbox.boto3_kwargs())
    table = load_hook().ISSUED_TABLE
    try:
        ddb.create_table(TableName=table, KeySchema=[{"AttributeName": "serial", "KeyType": "HASH"}],
                         AttributeDefinitions=[{"AttributeName": "serial", "AttributeType": "S"}],
                         BillingMode="PAY_PER_REQUEST")
    except ddb.exceptions.ResourceInUseException:
        pass
    try:
        issued, rogue = uuid.uuid4().hex[:12], uuid.uuid4().hex[:12]
        ddb.put_item(TableName=table, Item={"serial": {"S": issued}})
        _, refused = _register(sandbox, claim, clients, rogue)
        assert isinstance(refused, V2ServiceException) and "not issued" in refused.modeled_error.error_message
        with pytest.raises(iot.exceptions.ResourceNotFoundException):
            iot.describe_thing(thingName=f"esp-{rogue}")
        _, ok = _register(sandbox, claim, clients, issued)
        assert ok.thing_name == f"esp-{issued}"
        _, bad = _register(sandbox, claim, clients, "+")
        assert isinstance(bad, V2ServiceException)
    finally:
        ddb.delete_table(TableName=table)


def test_hook_decisions():
    hook = load_hook()

    def decide(serial, active=(), issued=None):
        return hook.decide({"parameters": {"SerialNumber": serial}, "certificateId": "new"},
                           active_certificates=lambda thing: list(active), serial_issued=lambda s: issued)

    assert decide("A1B2")["allowProvisioning"] is True
    assert decide("A1B2", active=["new"])["allowProvisioning"] is True  # its own new certificate
    assert decide("A1B2", active=["old"])["allowProvisioning"] is False
    assert decide("A1B2", issued=False)["allowProvisioning"] is False
    assert decide("A1B2", issued=True)["allowProvisioning"] is True
    for bad in ("", "+", "#", "a/b", "x" * 65, "../x"):
        assert decide(bad)["allowProvisioning"] is False
