"""Fleet provisioning by claim with the real awsiotsdk IotIdentityClientV2, then the new cert connects."""

from __future__ import annotations

import uuid

import pytest
from awsiot import V2ServiceException, iotidentity

from fleetdesk.sandbox.provisioning import setup_claim

from .conftest import mtls_builder, result, rr_options

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def claim(sandbox):
    import boto3

    return setup_claim(boto3.client("iot", **sandbox.boto3_kwargs()))


def test_templates_control_plane(iot, claim):
    from botocore.exceptions import ClientError

    names = [t["templateName"] for t in iot.list_provisioning_templates()["templates"]]
    assert claim["templateName"] in names
    d = iot.describe_provisioning_template(templateName=claim["templateName"])
    assert d["enabled"] is True and "Resources" in d["templateBody"]
    with pytest.raises(ClientError) as e:
        iot.create_provisioning_template(templateName="bad", templateBody="{}",
                                          provisioningRoleArn="arn:aws:iam::000000000000:role/x")
    assert e.value.response["Error"]["Code"] == "InvalidRequestException"
    with pytest.raises(ClientError) as e:
        iot.describe_provisioning_template(templateName="nope")
    assert e.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_claim_provisions_a_thing_whose_cert_then_connects(sandbox, iot, claim, clients):
    serial = uuid.uuid4().hex[:12]
    dev = clients(mtls_builder(sandbox, claim["certificatePem"], claim["privateKey"], f"claim-{serial}"))
    assert dev.connect(), dev.failure
    ident = iotidentity.IotIdentityClientV2(dev.client, rr_options())
    created = result(ident.create_keys_and_certificate(iotidentity.CreateKeysAndCertificateRequest()))
    assert len(created.certificate_id) == 64 and created.private_key and created.certificate_ownership_token
    assert iot.describe_certificate(certificateId=created.certificate_id)["certificateDescription"]["status"] == "INACTIVE"

    with pytest.raises(V2ServiceException):
        result(ident.register_thing(iotidentity.RegisterThingRequest(
            template_name=claim["templateName"], certificate_ownership_token="forged",
            parameters={"SerialNumber": serial})))

    with pytest.raises(V2ServiceException) as e:  # SerialNumber has no default
        result(ident.register_thing(iotidentity.RegisterThingRequest(
            template_name=claim["templateName"], certificate_ownership_token=created.certificate_ownership_token,
            parameters={"MacAddress": "AA:BB"})))
    assert e.value.modeled_error.error_code == "InvalidParameters"

    reg = result(ident.register_thing(iotidentity.RegisterThingRequest(
        template_name=claim["templateName"], certificate_ownership_token=created.certificate_ownership_token,
        parameters={"SerialNumber": serial, "MacAddress": "AA:BB"})))
    assert reg.thing_name == f"esp-{serial}"
    assert iot.describe_thing(thingName=reg.thing_name)["attributes"]["serial"] == serial
    assert iot.describe_certificate(certificateId=created.certificate_id)["certificateDescription"]["status"] == "ACTIVE"
    dev.stop()

    thing = clients(mtls_builder(sandbox, created.certificate_pem, created.private_key, reg.thing_name))
    assert thing.connect(), thing.failure
    assert thing.subscribe(f"$aws/things/{reg.thing_name}/shadow/update/accepted") < 128
    thing.publish(f"$aws/things/{reg.thing_name}/shadow/update", {"state": {"reported": {"ok": 1}}})
    assert thing.expect(f"$aws/things/{reg.thing_name}/shadow/update/accepted")["version"] == 1


def test_template_update_disable_and_delete(sandbox, iot, claim, clients):
    dev = clients(mtls_builder(sandbox, claim["certificatePem"], claim["privateKey"], f"claim-{uuid.uuid4().hex[:6]}"))
    assert dev.connect()
    ident = iotidentity.IotIdentityClientV2(dev.client, rr_options())
    created = result(ident.create_keys_and_certificate(iotidentity.CreateKeysAndCertificateRequest()))
    iot.update_provisioning_template(templateName=claim["templateName"], enabled=False)
    try:
        with pytest.raises(V2ServiceException) as e:
            result(ident.register_thing(iotidentity.RegisterThingRequest(
                template_name=claim["templateName"], certificate_ownership_token=created.certificate_ownership_token,
                parameters={"SerialNumber": uuid.uuid4().hex[:8]})))
        assert e.value.modeled_error.error_code == "TemplateDisabled"
    finally:
        iot.update_provisioning_template(templateName=claim["templateName"], enabled=True)
    assert iot.describe_provisioning_template(templateName=claim["templateName"])["enabled"] is True

    name = f"tmp-{uuid.uuid4().hex[:6]}"
    body = iot.describe_provisioning_template(templateName=claim["templateName"])["templateBody"]
    iot.create_provisioning_template(templateName=name, templateBody=body, enabled=True,
                                     provisioningRoleArn="arn:aws:iam::000000000000:role/x")
    # the claim policy names only the default template: another template's topics are refused
    assert dev.subscribe(f"$aws/provisioning-templates/{name}/provision/json/rejected") >= 128
    iot.delete_provisioning_template(templateName=name)
    assert name not in [t["templateName"] for t in iot.list_provisioning_templates()["templates"]]


def test_claim_cert_may_only_use_provisioning_topics(sandbox, claim, clients):
    dev = clients(mtls_builder(sandbox, claim["certificatePem"], claim["privateKey"], f"claim-{uuid.uuid4().hex[:6]}"))
    assert dev.connect()
    assert dev.subscribe("$aws/things/someone/shadow/update/accepted") >= 128
    assert dev.publish("dt/someone/env", b"{}").puback.reason_code != 0


def test_csr_flow(sandbox, claim, clients):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    csr = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dev")])).sign(key, hashes.SHA256())
    dev = clients(mtls_builder(sandbox, claim["certificatePem"], claim["privateKey"], f"claim-{uuid.uuid4().hex[:6]}"))
    assert dev.connect()
    ident = iotidentity.IotIdentityClientV2(dev.client, rr_options())
    out = result(ident.create_certificate_from_csr(iotidentity.CreateCertificateFromCsrRequest(
        certificate_signing_request=csr.public_bytes(serialization.Encoding.PEM).decode())))
    assert out.certificate_pem.startswith("-----BEGIN CERTIFICATE") and out.certificate_ownership_token
    with pytest.raises(V2ServiceException) as e:
        result(ident.create_certificate_from_csr(iotidentity.CreateCertificateFromCsrRequest(
            certificate_signing_request="not a csr")))
    assert e.value.modeled_error.error_code == "InvalidCSR"
