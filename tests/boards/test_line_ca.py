"""The line CA (issue 19 §2): made locally (key 0600), registered with the sandbox as with AWS
IoT (verification certificate, JITP template, auto-registration), rotated; the sandbox refuses
what AWS refuses in AWS's error shape; stations sign device certificates with no cloud call."""

from __future__ import annotations

import datetime as dt
import json
import os
import stat
import subprocess
import sys

import pytest
from botocore.exceptions import ClientError
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from fleetdesk.boards.identity import CloudTarget
from fleetdesk.boards.line_ca import LineCA, LineCaError

pytestmark = pytest.mark.slow


@pytest.fixture
def iot(sandbox):
    return CloudTarget.from_sandbox(sandbox.state_dir).iot


def _code(exc) -> str:
    return exc.value.response["Error"]["Code"]


def _cert(subject_cn: str, issuer_key, issuer_name=None, *, ca: bool = False, key=None) -> tuple[str, object]:
    key = key or ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject_cn)])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer_name or name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=1)).not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .sign(issuer_key or key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode(), key


def test_create_register_and_sign_with_no_cloud_call(sandbox, iot, tmp_path):
    env = {**os.environ, "FLEETDESK_DATA_DIR": str(tmp_path / "admin")}
    run = [sys.executable, "-m", "fleetdesk", "line", "ca"]
    assert subprocess.run(run + ["create"], env=env, capture_output=True, timeout=60).returncode == 0
    again = subprocess.run(run + ["create"], env=env, capture_output=True, text=True, timeout=60)
    assert again.returncode == 1 and "already exists" in again.stderr and "rotate" in again.stderr
    ca = LineCA(tmp_path / "admin" / "line-ca")
    assert stat.S_IMODE(ca.key_file.stat().st_mode) == 0o600
    reg = subprocess.run(run + ["register", "--state-dir", sandbox.state_dir, "--group", "line-1", "--json"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert reg.returncode == 0, reg.stderr
    ca_id = json.loads(reg.stdout)["certificateId"]
    d = iot.describe_ca_certificate(certificateId=ca_id)
    assert d["certificateDescription"]["status"] == "ACTIVE"
    assert d["certificateDescription"]["autoRegistrationStatus"] == "ENABLE"
    template = json.loads(d["registrationConfig"]["templateBody"])
    assert template["Resources"]["thing"]["Properties"]["ThingGroups"] == ["line-1"]
    assert ca_id in [c["certificateId"] for c in iot.list_ca_certificates()["certificates"]]

    # a station signs a board's certificate locally: no AWS credentials, no sandbox
    code = ("import os, sys; from fleetdesk.boards.line_ca import LineCA;"
            "assert not [k for k in os.environ if k.startswith('AWS_')];"
            "d = LineCA(sys.argv[1]).sign_device('fd-line-0001'); print(d.chain_pem)")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k != "FLEETDESK_SANDBOX_DIR"}
    out = subprocess.run([sys.executable, "-c", code, str(ca.folder)], env=clean, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    leaf, root = x509.load_pem_x509_certificates(out.stdout.encode())
    leaf.verify_directly_issued_by(root)
    assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "fd-line-0001"
    assert root.public_bytes(serialization.Encoding.PEM) == ca.cert_file.read_bytes()

    new_id, old_id = ca.rotate(iot)
    assert old_id == ca_id and new_id != ca_id
    assert iot.describe_ca_certificate(certificateId=old_id)["certificateDescription"]["autoRegistrationStatus"] == \
        "DISABLE"
    assert iot.describe_ca_certificate(certificateId=new_id)["certificateDescription"]["autoRegistrationStatus"] == \
        "ENABLE"
    assert json.loads(iot.describe_ca_certificate(certificateId=new_id)["registrationConfig"]["templateBody"]) \
        ["Resources"]["thing"]["Properties"]["ThingGroups"] == ["line-1"]  # the groups carry over


def test_register_refuses_what_aws_refuses(iot):
    code = iot.get_registration_code()["registrationCode"]
    assert iot.get_registration_code()["registrationCode"] == code  # one code per account
    ca_pem, ca_key = _cert("test line CA", None, ca=True)
    ca_name = x509.load_pem_x509_certificate(ca_pem.encode()).subject
    wrong_cn, _ = _cert("not-the-code", ca_key, ca_name)
    with pytest.raises(ClientError) as err:
        iot.register_ca_certificate(caCertificate=ca_pem, verificationCertificate=wrong_cn)
    assert _code(err) == "RegistrationCodeValidationException"
    self_signed, _ = _cert(code, None)  # the code, but not signed by the CA's key
    with pytest.raises(ClientError) as err:
        iot.register_ca_certificate(caCertificate=ca_pem, verificationCertificate=self_signed)
    assert _code(err) == "CertificateValidationException"
    leaf_pem, leaf_key = _cert("a leaf", None)  # not a CA
    with pytest.raises(ClientError) as err:
        iot.register_ca_certificate(caCertificate=leaf_pem, verificationCertificate=_cert(code, leaf_key)[0])
    assert _code(err) == "CertificateValidationException"

    good, _ = _cert(code, ca_key, ca_name)
    ca_id = iot.register_ca_certificate(caCertificate=ca_pem, verificationCertificate=good)["certificateId"]
    assert iot.describe_ca_certificate(certificateId=ca_id)["certificateDescription"]["status"] == "INACTIVE"
    with pytest.raises(ClientError) as err:
        iot.register_ca_certificate(caCertificate=ca_pem, verificationCertificate=good)
    assert _code(err) == "ResourceAlreadyExistsException"
    iot.update_ca_certificate(certificateId=ca_id, newStatus="ACTIVE", newAutoRegistrationStatus="ENABLE")
    assert iot.describe_ca_certificate(certificateId=ca_id)["certificateDescription"]["status"] == "ACTIVE"
    with pytest.raises(ClientError) as err:
        iot.delete_ca_certificate(certificateId=ca_id)
    assert _code(err) == "CertificateStateException"
    with pytest.raises(ClientError) as err:
        iot.update_ca_certificate(certificateId=ca_id, registrationConfig={"templateBody": "{not json"})
    assert _code(err) == "InvalidRequestException"
    iot.update_ca_certificate(certificateId=ca_id, newStatus="INACTIVE")
    iot.delete_ca_certificate(certificateId=ca_id)
    with pytest.raises(ClientError) as err:
        iot.describe_ca_certificate(certificateId=ca_id)
    assert _code(err) == "ResourceNotFoundException"


def test_signing_without_the_ca_key_says_where_it_is(tmp_path):
    ca = LineCA(tmp_path / "ca")
    ca.create()
    ca.key_file.unlink()  # a station holding the certificate only
    with pytest.raises(LineCaError, match="private key"):
        ca.sign_device("fd-1")
