"""Unit tests (no processes): state dir marking, credentials, stale endpoint files, CA files."""

from __future__ import annotations

import json
import os
import stat

import pytest

from fleetdesk.errors import SandboxError
from fleetdesk.sandbox.ca import SandboxCA, certificate_id
from fleetdesk.sandbox.info import SandboxInfo
from fleetdesk.sandbox.server import load_credentials, prepare_state_dir


def test_new_state_dir_is_marked_and_secrets_are_private(tmp_path):
    state = tmp_path / "s"
    prepare_state_dir(state)
    assert (state / "VERSION").read_text().startswith("fleetdesk-sandbox ")
    creds = load_credentials(state)
    assert creds == load_credentials(state)  # made once, then reused
    assert stat.S_IMODE(os.stat(state / "credentials.json").st_mode) == 0o600
    ca = SandboxCA.load_or_create(state / "ca")
    assert stat.S_IMODE(os.stat(ca.directory / "ca.key").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(ca.server_key_file).st_mode) == 0o600
    issued = ca.issue(ca.cert.public_key())
    assert certificate_id(issued.certificate_pem) == issued.certificate_id and len(issued.certificate_id) == 64
    assert issued.common_name != ca.issue(ca.cert.public_key()).common_name  # unique CN per cert


def test_half_a_ca_is_an_error_not_a_new_ca(tmp_path):
    ca = SandboxCA.load_or_create(tmp_path / "ca")
    (ca.directory / "ca.key").unlink()
    with pytest.raises(SandboxError, match="incomplete"):
        SandboxCA.load_or_create(tmp_path / "ca")


def test_stale_endpoint_file_is_not_a_running_sandbox(tmp_path):
    state = tmp_path / "s"
    prepare_state_dir(state)
    # our own pid is alive, but no sandbox holds the state dir's lock
    (state / "endpoint.json").write_text(json.dumps({
        "mqtt_host": "127.0.0.1", "mqtt_port": 1, "ws_port": 2, "http_endpoint": "https://127.0.0.1:3",
        "ca_file": "x", "region": "us-east-1", "pid": os.getpid()}))
    (state / "sandbox.lock").touch()
    assert SandboxInfo.load(state) is None
    assert SandboxInfo.load(tmp_path / "nothing") is None
