"""Profiles round-trip, refuse nonsense with a clear message, and never store secrets in the file."""

from __future__ import annotations

import json

import pytest

from fleetdesk.config import Profile, Profiles
from fleetdesk.errors import ConfigError


def test_default_is_the_sandbox(tmp_path):
    profiles = Profiles.load(tmp_path / "profiles.json")
    assert profiles.current.kind == "sandbox"


def test_round_trip_keeps_aws_profile_without_secret(tmp_path):
    path = tmp_path / "profiles.json"
    p = Profiles()
    p.items["prod"] = Profile(name="prod", kind="aws", endpoint="abc-ats.iot.eu-west-1.amazonaws.com",
                              region="eu-west-1", credentials="keyring", access_key_id="AKIAEXAMPLE")
    p.active = "prod"
    p.save(path)
    text = path.read_text()
    assert "secret" not in text.lower()
    back = Profiles.load(path)
    assert back.current.endpoint == "abc-ats.iot.eu-west-1.amazonaws.com"
    assert back.current.region == "eu-west-1"


def test_aws_profile_without_endpoint_is_refused(tmp_path):
    p = Profiles()
    p.items["bad"] = Profile(name="bad", kind="aws")
    with pytest.raises(ConfigError, match="endpoint is empty"):
        p.save(tmp_path / "profiles.json")


def test_corrupt_profiles_file_names_the_file(tmp_path):
    path = tmp_path / "profiles.json"
    path.write_text("{not json")
    with pytest.raises(ConfigError) as exc:
        Profiles.load(path)
    assert str(path) in str(exc.value)
    assert path.read_text() == "{not json", "a corrupt file must never be silently overwritten"
