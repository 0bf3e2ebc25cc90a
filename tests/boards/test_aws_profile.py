"""The flash station's AWS path (issue 7 §3: "thing created in the active profile (sandbox or
AWS) via boto3"), tested for real without an AWS account: an aws-kind profile whose boto3
calls go to the sandbox through the standard env vars boto3 honours (exactly what
`fleetdesk sandbox env` prints), default-chain credentials, and the device CA overridden to
the sandbox CA (``extra["device_ca_file"]``, the documented override) for these tests only."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import boto3
import pytest
from botocore.exceptions import ClientError
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

from fleetdesk.boards.identity import CloudTarget
from fleetdesk.cloud.backend import AMAZON_ROOT_CA, AwsBackend, get_cloud_backend
from fleetdesk.config import Profile, Profiles
from fleetdesk.errors import CloudError

# published SHA-256 fingerprint of Amazon Root CA 1 (https://www.amazontrust.com/repository/)
AMAZON_ROOT_CA1_SHA256 = "8ecde6884f3d87b1125ba31ac3fcb13d7016de7f57cc904fe1cb97c6ae98196e"
_AWS_VARS = ("AWS_ENDPOINT_URL_IOT", "AWS_ENDPOINT_URL_IOT_DATA", "AWS_ENDPOINT_URL_IOT_DATA_PLANE",
             "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION",
             "AWS_CA_BUNDLE", "AWS_PROFILE")


def test_bundled_amazon_root_ca_parses_with_the_right_subject():
    cert = x509.load_pem_x509_certificate(AMAZON_ROOT_CA.read_bytes())
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "Amazon Root CA 1"
    assert cert.subject.rfc4514_string() == "CN=Amazon Root CA 1,O=Amazon,C=US"
    assert cert.issuer == cert.subject  # a root: self-signed
    assert cert.fingerprint(hashes.SHA256()).hex() == AMAZON_ROOT_CA1_SHA256
    # BLE field setup installs the same CA on AWS: both take the backend's device endpoint
    aws = Profile(name="aws", kind="aws", endpoint="x-ats.iot.us-east-1.amazonaws.com")
    assert get_cloud_backend(aws).device_endpoint().ca_pem == AMAZON_ROOT_CA.read_bytes()


def _aws_profile(sandbox, **extra) -> Profile:
    return Profile(name="aws-sbx", kind="aws", endpoint=sandbox.mqtt_host, region=sandbox.region,
                   credentials="default-chain", extra=dict(extra))


@pytest.fixture
def sandbox_env(sandbox, monkeypatch):
    """boto3's default chain pointed at the sandbox, as `eval "$(fleetdesk sandbox env)"` does."""
    out = subprocess.run([sys.executable, "-m", "fleetdesk", "sandbox", "env", "--format", "json",
                          "--state-dir", sandbox.state_dir], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    env = json.loads(out.stdout)
    assert env["AWS_ENDPOINT_URL_IOT"] == sandbox.http_endpoint
    for k in _AWS_VARS:
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        if k.startswith("AWS_"):
            monkeypatch.setenv(k, v)
    return env


def test_aws_target_defaults_amazon_ca_port_8883_and_describe_endpoint(sandbox, sandbox_env):
    t = CloudTarget.from_profile(Profile(name="aws", kind="aws", region=sandbox.region))  # endpoint empty
    assert isinstance(t.backend, AwsBackend) and t.port == 8883 and t.region == sandbox.region
    assert t.ca_pem == AMAZON_ROOT_CA.read_bytes()
    assert t.endpoint  # from DescribeEndpoint iot:Data-ATS, answered by the sandbox's control plane
    assert t.iot.meta.region_name == sandbox.region and t.iot.meta.endpoint_url == sandbox.http_endpoint


def test_aws_target_without_credentials_is_a_clear_error(sandbox, tmp_path, monkeypatch):
    for k in _AWS_VARS:
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(CloudError, match="no AWS credentials"):
        CloudTarget.from_profile(_aws_profile(sandbox))
    with pytest.raises(CloudError, match="aws-profile|nope|profile"):
        CloudTarget.from_profile(Profile(name="p", kind="aws", endpoint="x", credentials="aws-profile",
                                         aws_profile="nope"))


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_cli_flash_identity_through_the_aws_path(rig, bundle_dir, sandbox, sandbox_env, tmp_path):
    """`fleetdesk flash --identity --profile aws-sbx`: thing + ACTIVE cert made through the
    AWS code path, the board connects with them and PASSes on cloud presence."""
    board = rig.add(1)[0]
    profiles = Profiles.load()
    profiles.items["aws-sbx"] = _aws_profile(sandbox, device_ca_file=sandbox.ca_file, mqtt_port=sandbox.mqtt_port)
    profiles.save()  # the active profile stays "sandbox": --profile picks the AWS one
    env = {**os.environ, **{k: v for k, v in sandbox_env.items() if k.startswith("AWS_")}}
    env.pop("FLEETDESK_SANDBOX_DIR", None)  # nothing but the profile may lead to the sandbox
    res = subprocess.run([sys.executable, "-m", "fleetdesk", "flash", board.url, "--bundle", str(bundle_dir),
                          "--identity", "--profile", "aws-sbx", "--online-timeout", "90", "--json"],
                         capture_output=True, text=True, timeout=240, env=env)
    lines = [json.loads(x) for x in res.stdout.splitlines()]
    assert res.returncode == 0 and len(lines) == 1, (res.stderr, [(x["error"], x["console_tail"][-5:]) for x in lines])
    r = lines[0]
    assert r["result"] == "PASS" and r["thing"] == "fd-" + board.spec.mac.replace(":", "").lower()
    assert r["presence"].startswith("cloud presence")
    iot = boto3.client("iot", **sandbox.boto3_kwargs())
    assert iot.describe_thing(thingName=r["thing"])["attributes"]["mac"] == board.spec.mac.replace(":", "")
    desc = iot.describe_certificate(certificateId=r["certificate_id"])["certificateDescription"]
    assert desc["status"] == "ACTIVE"
    assert any(p.endswith(r["certificate_id"]) for p in iot.list_thing_principals(thingName=r["thing"])["principals"])
    assert iot.get_thing_connectivity_data(thingName=r["thing"])["connected"]

    bad = subprocess.run([sys.executable, "-m", "fleetdesk", "flash", board.url, "--bundle", str(bundle_dir),
                          "--identity", "--profile", "nope", "--json"], capture_output=True, text=True,
                         timeout=60, env=env)
    assert bad.returncode == 2 and "no profile named 'nope'" in bad.stderr


class _NoIndexing:
    """The real sandbox iot client, except GetThingConnectivityData answers as AWS does when
    fleet indexing (thing connectivity) is off for the account."""

    def __init__(self, iot) -> None:
        self._iot = iot

    def __getattr__(self, name):
        return getattr(self._iot, name)

    def get_thing_connectivity_data(self, **kw):
        raise ClientError({"Error": {"Code": "InvalidRequestException",
                                     "Message": "Thing connectivity indexing is not enabled"},
                           "ResponseMetadata": {"HTTPStatusCode": 400}}, "GetThingConnectivityData")


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_without_fleet_indexing_pass_comes_from_the_console_and_says_so(rig, bundle_dir, sandbox, sandbox_env,
                                                                         tmp_path):
    from fleetdesk.boards.station import Station, StationSettings
    from fleetdesk.store.production import ProductionDB

    board = rig.add(1)[0]
    cloud = CloudTarget.from_profile(_aws_profile(sandbox, device_ca_file=sandbox.ca_file,
                                                  mqtt_port=sandbox.mqtt_port))
    cloud.iot = _NoIndexing(cloud.iot)
    station = Station(StationSettings(bundle=str(bundle_dir), identity=True, online_timeout=90),
                      cloud=cloud, db=ProductionDB(tmp_path / "prod.sqlite3"))
    try:
        r = station.run_one(board.url)
    finally:
        station.close()
    assert r.result == "PASS", (r.error, r.console_tail[-5:])
    assert r.presence.startswith("boot seen on the console") and "indexing is not enabled" in r.presence
    assert any(f"online as {r.thing}" in line for line in r.console_tail)
    # it really is online: the sandbox's own presence agrees
    assert boto3.client("iot", **sandbox.boto3_kwargs()).get_thing_connectivity_data(thingName=r.thing)["connected"]
