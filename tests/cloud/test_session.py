"""Profile -> connection settings and boto3 arguments (no network)."""

from __future__ import annotations

import json

import pytest

from fleetdesk.cloud.session import app_client_id, app_settings, boto3_kwargs
from fleetdesk.config import Profile
from fleetdesk.errors import CloudError, ConfigError


def test_aws_profile_uses_websockets_sigv4_on_443():
    p = Profile(name="prod", kind="aws", endpoint="abc-ats.iot.eu-west-1.amazonaws.com", region="eu-west-1")
    s = app_settings(p)
    assert (s.auth, s.host, s.port, s.region, s.ca_file) == ("websockets", p.endpoint, 443, "eu-west-1", None)
    assert s.client_id == app_client_id(p) and not s.clean_start  # stable id: persistent session
    assert app_settings(p, ephemeral=True).client_id != s.client_id
    assert boto3_kwargs(p) == {"region_name": "eu-west-1"}
    with pytest.raises(ConfigError, match="endpoint is empty"):
        app_settings(Profile(kind="aws"))


def test_sandbox_profile_reads_endpoint_and_credentials(tmp_path):
    with pytest.raises(CloudError, match="sandbox is not running"):
        app_settings(Profile(state_dir=str(tmp_path)))
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    (tmp_path / "endpoint.json").write_text(json.dumps({
        "mqtt_host": "127.0.0.1", "mqtt_port": 8883, "ws_port": 8443, "http_endpoint": "https://127.0.0.1:8444",
        "ca_file": str(ca), "region": "us-east-1", "pid": 1, "internal_port": 18830}))
    (tmp_path / "credentials.json").write_text(json.dumps({
        "aws_access_key_id": "AK", "aws_secret_access_key": "SK", "internal_username": "fleetdesk-internal",
        "internal_password": "pw"}))
    s = app_settings(Profile(state_dir=str(tmp_path)))
    assert (s.auth, s.port, s.username, s.password, s.tls) == ("password", 18830, "fleetdesk-internal", "pw", False)
    s.check()  # loopback without TLS is allowed ...
    s.host = "10.0.0.5"
    with pytest.raises(ConfigError, match="without TLS"):  # ... nowhere else
        s.check()
