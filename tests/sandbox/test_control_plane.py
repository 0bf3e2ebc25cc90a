"""boto3 `iot` against the sandbox control plane: registry operations and AWS-shaped errors."""

from __future__ import annotations

import json

import pytest
import sandbox_http
from botocore.exceptions import ClientError
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

pytestmark = pytest.mark.slow


def _code(exc_info) -> str:
    return exc_info.value.response["Error"]["Code"]


def test_things_crud_paging_and_attribute_filter(iot, thing_name):
    names = [f"{thing_name}-{i}" for i in range(5)]
    for i, name in enumerate(names):
        out = iot.create_thing(thingName=name, attributePayload={"attributes": {"batch": thing_name, "n": str(i)}})
        assert out["thingArn"].endswith(f":thing/{name}")
    d = iot.describe_thing(thingName=names[0])
    assert d["attributes"] == {"batch": thing_name, "n": "0"} and d["version"] == 1 and d["defaultClientId"] == names[0]
    iot.update_thing(thingName=names[0], attributePayload={"attributes": {"n": "", "site": "A"}, "merge": True})
    d = iot.describe_thing(thingName=names[0])
    assert d["attributes"] == {"batch": thing_name, "site": "A"} and d["version"] == 2
    with pytest.raises(ClientError) as ei:
        iot.update_thing(thingName=names[0], attributePayload={"attributes": {}}, expectedVersion=1)
    assert _code(ei) == "VersionConflictException"

    seen, token = [], None
    while True:
        kw = {"nextToken": token} if token else {}
        page = iot.list_things(attributeName="batch", attributeValue=thing_name, maxResults=2, **kw)
        assert len(page["things"]) <= 2
        seen += [t["thingName"] for t in page["things"]]
        token = page.get("nextToken")
        if not token:
            break
    assert sorted(seen) == names
    paginated = [t["thingName"] for p in iot.get_paginator("list_things").paginate(
        attributeName="batch", attributeValue=thing_name, PaginationConfig={"PageSize": 3}) for t in p["things"]]
    assert sorted(paginated) == names

    with pytest.raises(ClientError) as ei:
        iot.create_thing(thingName=names[1], attributePayload={"attributes": {"other": "x"}})
    assert _code(ei) == "ResourceAlreadyExistsException"
    iot.delete_thing(thingName=names[4])
    with pytest.raises(ClientError) as ei:
        iot.describe_thing(thingName=names[4])
    assert _code(ei) == "ResourceNotFoundException"


def test_thing_groups_nested(iot, thing_name):
    root, child = f"{thing_name}-site", f"{thing_name}-line1"
    iot.create_thing_group(thingGroupName=root, thingGroupProperties={"thingGroupDescription": "factory"})
    iot.create_thing_group(thingGroupName=child, parentGroupName=root)
    iot.create_thing(thingName=thing_name)
    iot.add_thing_to_thing_group(thingGroupName=child, thingName=thing_name)
    d = iot.describe_thing_group(thingGroupName=child)
    assert d["thingGroupMetadata"]["parentGroupName"] == root
    assert [g["groupName"] for g in d["thingGroupMetadata"]["rootToParentThingGroups"]] == [root]
    assert iot.list_things_in_thing_group(thingGroupName=root, recursive=True)["things"] == [thing_name]
    assert iot.list_things_in_thing_group(thingGroupName=root)["things"] == []
    assert [g["groupName"] for g in iot.list_thing_groups(parentGroup=root)["thingGroups"]] == [child]
    iot.remove_thing_from_thing_group(thingGroupName=child, thingName=thing_name)
    assert iot.list_things_in_thing_group(thingGroupName=child)["things"] == []
    with pytest.raises(ClientError) as ei:
        iot.describe_thing_group(thingGroupName=f"{thing_name}-nope")
    assert _code(ei) == "ResourceNotFoundException"


def test_certificates_policies_and_principals(iot, thing_name, sandbox):
    cert = iot.create_keys_and_certificate(setAsActive=True)
    cid = cert["certificateId"]
    assert len(cid) == 64 and cert["certificateArn"].endswith(f":cert/{cid}")
    pem = x509.load_pem_x509_certificate(cert["certificatePem"].encode())
    ca = x509.load_pem_x509_certificate(open(sandbox.ca_file, "rb").read())
    assert pem.issuer == ca.subject
    pem.verify_directly_issued_by(ca)
    import hashlib

    assert hashlib.sha256(pem.public_bytes(serialization.Encoding.DER)).hexdigest() == cid
    desc = iot.describe_certificate(certificateId=cid)["certificateDescription"]
    assert desc["status"] == "ACTIVE" and desc["certificatePem"] == cert["certificatePem"]
    assert "caCertificateId" not in desc  # the sandbox's own (Amazon's) CA signed it: no registered CA to name

    doc = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "iot:Connect", "Resource": "arn:aws:iot:*:*:client/${iot:Connection.Thing.ThingName}"}]})
    policy = f"{thing_name}-policy"
    assert iot.create_policy(policyName=policy, policyDocument=doc)["policyVersionId"] == "1"
    assert json.loads(iot.get_policy(policyName=policy)["policyDocument"]) == json.loads(doc)
    assert policy in [p["policyName"] for p in iot.list_policies(pageSize=250)["policies"]]
    iot.attach_policy(policyName=policy, target=cert["certificateArn"])
    assert [p["policyName"] for p in iot.list_attached_policies(target=cert["certificateArn"])["policies"]] == [policy]
    iot.create_thing(thingName=thing_name)
    iot.attach_thing_principal(thingName=thing_name, principal=cert["certificateArn"])
    assert iot.list_thing_principals(thingName=thing_name)["principals"] == [cert["certificateArn"]]

    with pytest.raises(ClientError) as ei:  # still ACTIVE
        iot.delete_certificate(certificateId=cid)
    assert _code(ei) == "CertificateStateException"
    iot.update_certificate(certificateId=cid, newStatus="INACTIVE")
    with pytest.raises(ClientError) as ei:  # still attached to the thing
        iot.delete_certificate(certificateId=cid)
    assert _code(ei) == "DeleteConflictException"
    iot.detach_thing_principal(thingName=thing_name, principal=cert["certificateArn"])
    iot.delete_certificate(certificateId=cid, forceDelete=True)
    with pytest.raises(ClientError) as ei:
        iot.describe_certificate(certificateId=cid)
    assert _code(ei) == "ResourceNotFoundException"

    with pytest.raises(ClientError) as ei:
        iot.create_policy(policyName=f"{thing_name}-bad", policyDocument="{not json")
    assert _code(ei) == "MalformedPolicyException"
    with pytest.raises(ClientError) as ei:
        iot.attach_policy(policyName=f"{thing_name}-missing", target=cert["certificateArn"])
    assert _code(ei) == "ResourceNotFoundException"


def test_certificate_from_csr_and_bad_csr(iot):
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "device")]))
           .sign(key, hashes.SHA256()))
    out = iot.create_certificate_from_csr(certificateSigningRequest=csr.public_bytes(serialization.Encoding.PEM).decode(),
                                          setAsActive=False)
    cert = x509.load_pem_x509_certificate(out["certificatePem"].encode())
    assert cert.public_key().public_numbers() == key.public_key().public_numbers()
    assert iot.describe_certificate(certificateId=out["certificateId"])["certificateDescription"]["status"] == "INACTIVE"
    with pytest.raises(ClientError) as ei:
        iot.create_certificate_from_csr(certificateSigningRequest="-----BEGIN CERTIFICATE REQUEST-----\ngarbage\n")
    assert _code(ei) == "InvalidRequestException"


def test_describe_endpoint(iot, sandbox):
    assert iot.describe_endpoint(endpointType="iot:Data-ATS")["endpointAddress"] == sandbox.mqtt_host


def _raw(sandbox, method: str, path: str, body: bytes | None = None):
    """A SigV4-signed raw request (the sandbox refuses unsigned ones, as AWS does)."""
    return sandbox_http.raw(sandbox, method, path, body)


def test_malformed_requests_get_aws_shaped_400s(sandbox):
    status, headers, body = _raw(sandbox, "POST", "/policies/p-bad-body", b"{this is not json")
    assert status == 400 and headers["x-amzn-ErrorType"] == "InvalidRequestException"
    assert "JSON" in json.loads(body)["message"]
    status, headers, body = _raw(sandbox, "POST", "/policies/p-missing", b"{}")
    assert status == 400 and "policyDocument" in json.loads(body)["message"]
    status, headers, _ = _raw(sandbox, "GET", "/things?maxResults=lots")
    assert status == 400 and headers["x-amzn-ErrorType"] == "InvalidRequestException"
    status, headers, body = _raw(sandbox, "POST", "/things/t-bad-attrs", b'{"attributePayload": "nope"}')
    assert status == 400 and "attributePayload" in json.loads(body)["message"]
    status, headers, body = _raw(sandbox, "POST", "/things/t-bad-attrs",
                                 b'{"attributePayload": {"attributes": {"a": ["x"]}}}')
    assert status == 400 and headers["x-amzn-ErrorType"] == "InvalidRequestException"
    status, headers, _ = _raw(sandbox, "GET", "/no/such/api")
    assert status == 404 and headers["x-amzn-ErrorType"]


def test_thing_types_and_group_listing(iot, thing_name):
    ttype = f"{thing_name}-type"
    with pytest.raises(ClientError) as ei:
        iot.create_thing(thingName=thing_name, thingTypeName=ttype)
    assert _code(ei) == "ResourceNotFoundException"
    iot.create_thing_type(thingTypeName=ttype, thingTypeProperties={"thingTypeDescription": "DHT11 node"})
    iot.create_thing(thingName=thing_name, thingTypeName=ttype)
    assert iot.describe_thing(thingName=thing_name)["thingTypeName"] == ttype
    assert [t["thingTypeName"] for t in iot.list_thing_types(thingTypeName=ttype)["thingTypes"]] == [ttype]
    assert [t["thingName"] for t in iot.list_things(thingTypeName=ttype)["things"]] == [thing_name]
    iot.deprecate_thing_type(thingTypeName=ttype)
    assert iot.describe_thing_type(thingTypeName=ttype)["thingTypeMetadata"]["deprecated"] is True
    with pytest.raises(ClientError) as ei:
        iot.create_thing(thingName=thing_name + "-2", thingTypeName=ttype)
    assert _code(ei) == "InvalidRequestException"
    with pytest.raises(ClientError) as ei:  # still used by a thing
        iot.delete_thing_type(thingTypeName=ttype)
    assert _code(ei) == "InvalidRequestException"

    group = f"{thing_name}-grp"
    iot.create_thing_group(thingGroupName=group)
    iot.add_thing_to_thing_group(thingGroupName=group, thingName=thing_name)
    assert [g["groupName"] for g in iot.list_thing_groups_for_thing(thingName=thing_name)["thingGroups"]] == [group]
    version = iot.update_thing_group(thingGroupName=group, thingGroupProperties={
        "thingGroupDescription": "line 2", "attributePayload": {"attributes": {"floor": "1"}}})["version"]
    d = iot.describe_thing_group(thingGroupName=group)
    assert version == d["version"] == 2 and d["thingGroupProperties"]["thingGroupDescription"] == "line 2"
    assert d["thingGroupProperties"]["attributePayload"]["attributes"] == {"floor": "1"}
