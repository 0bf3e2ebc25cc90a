"""Claim-certificate mode: the station writes one claim certificate (minted once, kept 0600);
each board provisions itself by claim at first boot and PASSes once online as its own thing."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import uuid

import boto3
import pytest
from netutil import refused_port
from botocore.config import Config

from fleetdesk.boards.claim import ClaimStore, ClaimUnavailable
from fleetdesk.boards.identity import CloudTarget, _pem_to_der
from fleetdesk.boards.station import Station, StationSettings
from fleetdesk.boards.vfs import read_files
from fleetdesk.store.production import ProductionDB

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

CREATING = {"create_keys_and_certificate", "create_certificate_from_csr", "create_thing", "attach_thing_principal",
            "attach_policy", "create_policy"}


class Recording:
    """A boto3 ``iot`` client that records the operations called through it."""

    def __init__(self, client) -> None:
        self._client, self.calls = client, []

    def __getattr__(self, name):
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        def call(*args, **kwargs):
            self.calls.append(name)
            return attr(*args, **kwargs)
        return call


def _dead_iot():
    return boto3.client("iot", endpoint_url=f"https://127.0.0.1:{refused_port()}", region_name="us-east-1", aws_access_key_id="x",
                        aws_secret_access_key="y", verify=False,
                        config=Config(connect_timeout=1, retries={"max_attempts": 1}))


def _new_mac() -> str:
    return "24:6f:28:" + ":".join(f"{b:02x}" for b in os.urandom(3))


def _registry(cloud, thing):
    """[(certificate id, status, policies)] of a thing's principals."""
    out = []
    for arn in cloud.iot.list_thing_principals(thingName=thing)["principals"]:
        cert_id = arn.rsplit("/", 1)[-1]
        status = cloud.iot.describe_certificate(certificateId=cert_id)["certificateDescription"]["status"]
        policies = sorted(p["policyName"] for p in cloud.iot.list_attached_policies(target=arn)["policies"])
        out.append((cert_id, status, policies))
    return out


def test_claim_flash_boards_provision_themselves_and_come_online(rig, bundle_dir, tmp_path, sandbox):
    cloud = CloudTarget.from_sandbox(sandbox.state_dir)
    template = "fd-claim-" + uuid.uuid4().hex[:8]  # a template of its own in the session's sandbox
    db = ProductionDB(tmp_path / "prod.sqlite3")

    def settings():
        return StationSettings(bundle=str(bundle_dir), claim=True, claim_template=template, online_timeout=90,
                               station="line-1", operator="op")

    # the claim certificate is minted once, when the cloud answers, and kept 0600
    Station(settings(), cloud=cloud, db=db).check_ready()
    store = ClaimStore("sandbox", template)
    claim = store.load()
    assert claim is not None and claim.template == template
    assert stat.S_IMODE(os.stat(store.key_path).st_mode) == 0o600
    assert "PRIVATE KEY" not in (store.folder / "claim.json").read_text()
    claim_arn = cloud.iot.describe_certificate(certificateId=claim.certificate_id)["certificateDescription"][
        "certificateArn"]
    (policy,) = cloud.iot.list_attached_policies(target=claim_arn)["policies"]
    doc = cloud.iot.get_policy(policyName=policy["policyName"])["policyDocument"]
    assert f"provisioning-templates/{template}/provision/" in doc and "$aws/things" not in doc

    board_a, = rig.add(1, mac=_new_mac())
    board_b, = rig.add(1, mac=_new_mac())

    # A: the station's control plane is unreachable: it flashes from the stored claim cert
    ClaimStore._checked.clear()  # no recent online check to lean on
    dead = CloudTarget(_dead_iot(), cloud.endpoint, cloud.port, cloud.region, cloud.ca_pem)
    ra = Station(settings(), cloud=dead, db=db).run_one(board_a.url)
    assert ra.result == "PASS", (ra.error, ra.console_tail[-8:])
    assert ra.thing == "esp-" + board_a.spec.mac.replace(":", "")  # named by the template, from the MAC
    assert ra.presence.startswith("boot seen on the console"), ra.presence
    vfs = Station(settings(), cloud=dead, db=db).plan.partition("vfs")
    files = read_files(board_a.flash.read(vfs.offset, vfs.size))
    assert files["/certs/claim-cert.der"] == _pem_to_der(claim.certificate_pem)
    assert json.loads(files["/config.json"])["claim"]["template"] == template

    # B: the cloud answers; the flash itself creates nothing (no per-board certificate or thing)
    rec = Recording(cloud.iot)
    rb = Station(settings(), cloud=CloudTarget(rec, cloud.endpoint, cloud.port, cloud.region, cloud.ca_pem),
                 db=db).run_one(board_b.url)
    assert rb.result == "PASS", (rb.error, rb.console_tail[-8:])
    assert rb.presence.startswith("cloud presence"), rb.presence
    assert not CREATING & set(rec.calls), rec.calls

    for r in (ra, rb):
        certs = _registry(cloud, r.thing)
        active = [c for c in certs if c[1] == "ACTIVE"]
        assert len(active) == 1, certs  # exactly one ACTIVE certificate: the board's own
        cert_id, _, policies = active[0]
        assert cert_id != claim.certificate_id and "fleetdesk-provisioned-thing" in policies
        assert cloud.connectivity(r.thing)["connected"]
    assert rb.certificate_id == _registry(cloud, rb.thing)[0][0]
    rows = {x["mac"]: x for x in db.attempts()}
    assert rows[rb.mac]["thing"] == rb.thing and rows[rb.mac]["certificate_id"] == rb.certificate_id
    assert rows[ra.mac]["thing"] == ra.thing and rows[ra.mac]["result"] == "PASS"
    journal = " ".join(str(j["detail"]) for j in db.journal(rb.run_id))

    # a re-flash in claim mode: the board claims a new certificate; its earlier one is retired
    before = [c for c in _registry(cloud, ra.thing) if c[1] == "ACTIVE"]
    again = Station(settings(), cloud=cloud, db=db).run_one(board_a.url)
    assert again.result == "PASS" and again.reflash and again.thing == ra.thing, again.error
    after = _registry(cloud, ra.thing)
    assert [c[0] for c in after if c[1] == "ACTIVE"] == [again.certificate_id] != [before[0][0]]
    assert (before[0][0], "INACTIVE") in [(c[0], c[1]) for c in after]
    assert '"claim": true' in journal and template in journal
    assert "PRIVATE KEY" not in journal and claim.private_key_pem.splitlines()[1] not in journal


def test_claim_without_claim_cert_and_no_cloud_is_a_clear_stop(rig, bundle_dir, tmp_path):
    (board,) = rig.add(1)
    db = ProductionDB(tmp_path / "prod.sqlite3")
    settings = StationSettings(bundle=str(bundle_dir), claim=True, sandbox_state_dir=str(tmp_path / "no-sandbox"))
    station = Station(settings, db=db)  # the sandbox is not running: no cloud at all
    with pytest.raises(ClaimUnavailable, match="no claim certificate on this station") as exc:
        station.check_ready()
    assert "not running" in exc.value.message and "connect the station to the cloud once" in exc.value.advice
    with pytest.raises(ClaimUnavailable):
        station.run_one(board.url)
    dead = Station(settings, cloud=CloudTarget(_dead_iot(), "127.0.0.1", 8883, "us-east-1", b""), db=db)
    with pytest.raises(ClaimUnavailable, match="did not answer"):
        dead.check_ready()
    assert db.attempts() == []  # a station-level stop: no FAIL row per board, nothing written
    assert board.flash.read(0x8000, 4096).count(0xFF) == 4096

    proc = subprocess.run([sys.executable, "-m", "fleetdesk", "flash", board.url, "--bundle", str(bundle_dir),
                           "--claim", "--state-dir", str(tmp_path / "no-sandbox")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "no claim certificate on this station" in proc.stderr, proc.stderr


def test_claimed_board_that_never_comes_online_leaves_no_active_certificate(rig, bundle_dir, tmp_path, sandbox):
    cloud = CloudTarget.from_sandbox(sandbox.state_dir)
    template = "fd-noconn-" + uuid.uuid4().hex[:8]
    refuse = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "iot:Connect", "Resource": "arn:aws:iot:*:*:client/nobody"}]}
    body = {"Parameters": {"SerialNumber": {"Type": "String"}, "AWS::IoT::Certificate::Id": {"Type": "String"}},
            "Resources": {
                "thing": {"Type": "AWS::IoT::Thing",
                          "Properties": {"ThingName": {"Fn::Join": ["", ["nc-", {"Ref": "SerialNumber"}]]}}},
                "certificate": {"Type": "AWS::IoT::Certificate",
                                "Properties": {"CertificateId": {"Ref": "AWS::IoT::Certificate::Id"},
                                               "Status": "ACTIVE"}},
                "policy": {"Type": "AWS::IoT::Policy", "Properties": {"PolicyDocument": json.dumps(refuse)}}}}
    cloud.iot.create_provisioning_template(templateName=template, templateBody=json.dumps(body), enabled=True,
                                           provisioningRoleArn="arn:aws:iam::000000000000:role/x")
    (board,) = rig.add(1, mac=_new_mac())
    settings = StationSettings(bundle=str(bundle_dir), claim=True, claim_template=template, online_timeout=15)
    db = ProductionDB(tmp_path / "prod.sqlite3")
    r = Station(settings, cloud=cloud, db=db).run_one(board.url)
    assert r.result == "FAIL" and r.advice_code == "not-online", r.error
    assert ("online", "failed") in [(j["step"], j["status"]) for j in db.journal(r.run_id)]
    assert r.thing == "nc-" + board.spec.mac.replace(":", "")  # the template's own naming, predicted
    assert "set INACTIVE" in r.error, r.error
    certs = _registry(cloud, r.thing)
    assert certs and all(status == "INACTIVE" for _, status, _ in certs), certs  # the claimed cert: rolled back


def _claim_register(sandbox, claim, template: str, serial: str):
    """What a rogue holder of the station's claim certificate tries: CreateKeysAndCertificate +
    RegisterThing for ``serial`` (real awsiotsdk over mTLS); the reply or the refusal."""
    from awscrt import mqtt_request_response
    from awsiot import V2ServiceException, iotidentity
    from helpers_sandbox import Mqtt5, mtls_builder

    dev = Mqtt5(mtls_builder(sandbox, claim.certificate_pem, claim.private_key_pem, f"claim-{uuid.uuid4().hex[:8]}"))
    try:
        assert dev.connect(), dev.failure
        ident = iotidentity.IotIdentityClientV2(dev.client, mqtt_request_response.ClientOptions(
            max_request_response_subscriptions=6, max_streaming_subscriptions=4, operation_timeout_in_seconds=10))
        created = ident.create_keys_and_certificate(iotidentity.CreateKeysAndCertificateRequest()).result(12)
        try:
            return ident.register_thing(iotidentity.RegisterThingRequest(
                template_name=template, certificate_ownership_token=created.certificate_ownership_token,
                parameters={"SerialNumber": serial, "MacAddress": serial})).result(12)
        except V2ServiceException as exc:
            return exc
    finally:
        dev.stop()


def test_the_stations_claim_template_has_the_hook_and_only_issued_serials_claim(rig, bundle_dir, tmp_path, sandbox):
    """The template the station creates names the pre-provisioning hook, and the station puts
    each serial it flashes into the hook's issued-serials table: its claim certificate can
    neither re-register an existing esp-<serial> thing nor claim a serial it never issued."""
    from fleetdesk.boards.claim import ISSUED_SERIALS_TABLE

    cloud = CloudTarget.from_sandbox(sandbox.state_dir)
    ddb = boto3.client("dynamodb", **sandbox.boto3_kwargs())
    ddb.create_table(TableName=ISSUED_SERIALS_TABLE, KeySchema=[{"AttributeName": "serial", "KeyType": "HASH"}],
                     AttributeDefinitions=[{"AttributeName": "serial", "AttributeType": "S"}],
                     BillingMode="PAY_PER_REQUEST")
    try:
        template = "fd-claim-" + uuid.uuid4().hex[:8]
        db = ProductionDB(tmp_path / "prod.sqlite3")
        (board,) = rig.add(1, mac=_new_mac())
        settings = StationSettings(bundle=str(bundle_dir), claim=True, claim_template=template, online_timeout=90)
        res = Station(settings, cloud=cloud, db=db).run_one(board.url)
        assert res.result == "PASS", (res.error, res.console_tail[-8:])
        serial = board.spec.mac.replace(":", "")
        assert res.thing == f"esp-{serial}"
        hook = cloud.iot.describe_provisioning_template(templateName=template)["preProvisioningHook"]
        assert hook["targetArn"].endswith(":function:fleetdesk-pre-provisioning-hook")
        assert "Item" in ddb.get_item(TableName=ISSUED_SERIALS_TABLE, Key={"serial": {"S": serial}})

        claim = ClaimStore("sandbox", template).load()
        taken = _claim_register(sandbox, claim, template, serial)  # the hijack of the flashed board's thing
        assert taken.modeled_error.error_code == "AccessDenied", taken
        assert "already has an ACTIVE certificate" in taken.modeled_error.error_message
        assert [c[0] for c in _registry(cloud, res.thing) if c[1] == "ACTIVE"] == [res.certificate_id]
        rogue = uuid.uuid4().hex[:12]
        refused = _claim_register(sandbox, claim, template, rogue)
        assert refused.modeled_error.error_code == "AccessDenied" and "not issued" in \
            refused.modeled_error.error_message, refused
        with pytest.raises(cloud.iot.exceptions.ResourceNotFoundException):
            cloud.iot.describe_thing(thingName=f"esp-{rogue}")
        db.close()
    finally:
        ddb.delete_table(TableName=ISSUED_SERIALS_TABLE)  # the session's sandbox checks no serials again
