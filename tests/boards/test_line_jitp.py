"""A line station in line-CA mode (issue 19 §2): the real `fleetdesk flash --line-ca` CLI with no
AWS credentials and no sandbox state in its environment signs each board's certificate with the
line's CA; the board's first connect through the sandbox's mTLS front registers the certificate
and creates the thing (JITP), and PASS comes only once the board is online as its own thing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from cryptography import x509

from fleetdesk.boards.identity import CloudTarget
from fleetdesk.store.production import ProductionDB

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def _mac() -> str:
    return "24:6f:28:" + os.urandom(3).hex(":")


def _admin_registers_a_line_ca(sandbox, tmp_path) -> tuple[str, object]:
    """The admin machine's one-time step (it holds the sandbox's credentials); returns the CA id
    and the CA folder a station gets a copy of."""
    env = {**os.environ, "FLEETDESK_DATA_DIR": str(tmp_path / "admin")}
    run = [sys.executable, "-m", "fleetdesk", "line", "ca"]
    made = subprocess.run(run + ["create"], env=env, capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    reg = subprocess.run(run + ["register", "--state-dir", sandbox.state_dir, "--group", "line-jitp", "--json"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert reg.returncode == 0, reg.stderr
    return json.loads(reg.stdout)["certificateId"], tmp_path / "admin" / "line-ca"


def _station_env(tmp_path, n: int, ca_folder, ledger: str) -> dict:
    """A floor PC: its own data dir and HOME, the line CA copied in, no AWS_* and no sandbox dir."""
    data = tmp_path / f"station-{n}"
    shutil.copytree(ca_folder, data / "line-ca")
    home = tmp_path / f"home-{n}"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and not k.startswith("FLEETDESK_")}
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"), XDG_DATA_HOME=str(home / ".local/share"),
               FLEETDESK_DATA_DIR=str(data), FLEETDESK_LEDGER=ledger)
    return env


def test_line_ca_stations_flash_with_no_aws_credentials_and_jitp_creates_the_things(
        rig, bundle_dir, sandbox, pg_server, tmp_path):
    ca_id, ca_folder = _admin_registers_a_line_ca(sandbox, tmp_path)
    ledger = pg_server.create_db("jitp")
    boards = [rig.add(1, mac=_mac())[0] for _ in range(4)]
    procs = []
    for n in range(2):
        env = _station_env(tmp_path, n, ca_folder, ledger)
        assert not [k for k in env if k.startswith("AWS_")]
        cmd = [sys.executable, "-m", "fleetdesk", "flash", *[b.url for b in boards[2 * n:2 * n + 2]], "--bundle",
               str(bundle_dir), "--line-ca", "--baud", "115200", "--station", f"jitp-{n}", "--json"]
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results, errors = [], []
    for p in procs:
        out, err = p.communicate(timeout=240)
        results += [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        errors.append(err)
    fails = [(r["port"], r["error"]) for r in results if r["result"] != "PASS"]
    assert len(results) == 4 and not fails, (fails, [r["console_tail"] for r in results if r["result"] != "PASS"][:1],
                                             errors)
    assert all("JITP" in r["presence"] for r in results)

    iot = CloudTarget.from_sandbox(sandbox.state_dir).iot  # the admin's view of the registry
    line_ca = x509.load_pem_x509_certificate(
        iot.describe_ca_certificate(certificateId=ca_id)["certificateDescription"]["certificatePem"].encode())
    assert len({r["thing"] for r in results}) == len({r["certificate_id"] for r in results}) == 4
    for r in results:  # JITP created each thing with its own certificate, ACTIVE, of the line's CA
        assert iot.describe_thing(thingName=r["thing"])["attributes"] == {"provisioned": "jitp"}
        principals = iot.list_thing_principals(thingName=r["thing"])["principals"]
        assert [p.rsplit("/", 1)[1] for p in principals] == [r["certificate_id"]]
        desc = iot.describe_certificate(certificateId=r["certificate_id"])["certificateDescription"]
        assert desc["status"] == "ACTIVE"
        x509.load_pem_x509_certificate(desc["certificatePem"].encode()).verify_directly_issued_by(line_ca)
        groups = iot.list_thing_groups_for_thing(thingName=r["thing"])["thingGroups"]
        assert [g["groupName"] for g in groups] == ["line-jitp"]
        assert iot.get_thing_connectivity_data(thingName=r["thing"])["connected"] is True
    db = ProductionDB(ledger)
    try:
        rows = db.attempts()
        assert sorted(r["mac"] for r in rows) == sorted(b.spec.mac for b in boards)
        assert {r["station"] for r in rows} == {"jitp-0", "jitp-1"} and all(r["result"] == "PASS" for r in rows)
        assert {r["certificate_id"] for r in rows} == {r["certificate_id"] for r in results}
    finally:
        db.close()


def test_a_line_ca_station_without_a_registered_ca_fails_every_board_and_says_how(rig, bundle_dir, tmp_path):
    (board,) = rig.add(1, mac=_mac())
    data = tmp_path / "station"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["FLEETDESK_DATA_DIR"] = str(data)
    made = subprocess.run([sys.executable, "-m", "fleetdesk", "line", "ca", "create"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    res = subprocess.run([sys.executable, "-m", "fleetdesk", "flash", board.url, "--bundle", str(bundle_dir),
                          "--line-ca", "--json"], env=env, capture_output=True, text=True, timeout=120)
    out = json.loads(res.stdout.splitlines()[-1])
    assert out["result"] == "FAIL" and "not registered with the cloud yet" in out["error"]
    assert "fleetdesk line ca register" in out["advice"]
