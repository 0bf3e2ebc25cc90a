"""Profile -> its cloud backend: connection settings, boto3 clients, device endpoint (no network)."""

from __future__ import annotations

import fcntl
import json
import os

import pytest

from fleetdesk.cloud.backend import AwsBackend, SandboxBackend, app_client_id, get_cloud_backend
from fleetdesk.config import Profile
from fleetdesk.errors import CloudError, ConfigError


def test_aws_profile_uses_websockets_sigv4_on_443(monkeypatch):
    p = Profile(name="prod", kind="aws", endpoint="abc-ats.iot.eu-west-1.amazonaws.com", region="eu-west-1")
    backend = get_cloud_backend(p)
    assert isinstance(backend, AwsBackend)
    s = backend.mqtt_settings()
    assert (s.auth, s.host, s.port, s.region, s.ca_file) == ("websockets", p.endpoint, 443, "eu-west-1", None)
    assert s.client_id == app_client_id(p) and not s.clean_start  # stable id: persistent session
    assert backend.mqtt_settings(ephemeral=True).client_id != s.client_id
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AK")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "SK")
    assert backend.client("iot").meta.region_name == "eu-west-1"
    assert "eu-west-1" in backend.describe(backend.attached_state())
    with pytest.raises(ConfigError, match="endpoint is empty"):
        get_cloud_backend(Profile(kind="aws")).mqtt_settings()


def test_an_unknown_profile_kind_is_refused_with_its_name():
    with pytest.raises(ConfigError, match="kind must be 'sandbox' or 'aws', not 'azure'"):
        get_cloud_backend(Profile(name="x", kind="azure"))


def test_sandbox_profile_reads_endpoint_and_credentials(tmp_path):
    backend = get_cloud_backend(Profile(state_dir=str(tmp_path)))
    assert isinstance(backend, SandboxBackend)
    with pytest.raises(CloudError, match="sandbox in .* is not running"):
        backend.mqtt_settings()
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    (tmp_path / "endpoint.json").write_text(json.dumps({
        "mqtt_host": "127.0.0.1", "mqtt_port": 8883, "ws_port": 8443, "http_endpoint": "https://127.0.0.1:8444",
        "ca_file": str(ca), "region": "us-east-1", "pid": os.getpid(), "internal_port": 18830}))
    (tmp_path / "credentials.json").write_text(json.dumps({
        "aws_access_key_id": "AK", "aws_secret_access_key": "SK", "internal_username": "fleetdesk-internal",
        "internal_password": "s3cret-Pw-4e1f"}))
    with open(tmp_path / "sandbox.lock", "wb") as lock:  # what a running sandbox holds
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        s = backend.mqtt_settings()
        # the app logs in as AwsBackend does (WebSockets + SigV4 with the sandbox's keys, through the
        # front that applies IoT Core's per-connection quotas), never with the internal login
        assert (s.auth, s.port, s.websockets, s.region, s.ca_file) == ("websockets", 8443, True, "us-east-1", str(ca))
        assert s.username != "fleetdesk-internal" and s.password != "s3cret-Pw-4e1f"
        s.check()
        ep = backend.device_endpoint()
        assert (ep.host, ep.port, ep.region, ep.ca_pem) == ("127.0.0.1", 8883, "us-east-1", ca.read_bytes())
        assert "s3cret-Pw-4e1f" not in json.dumps(backend.attached_state().endpoint)  # the status bar gets no secrets
