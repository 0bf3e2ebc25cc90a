"""Provisioning template intrinsic functions (pure)."""

from __future__ import annotations

import json

import pytest

from fleetdesk.paths import RESOURCES_DIR
from fleetdesk.sandbox.provisioning import ProvisioningError, _evaluate, validate_template_body


def test_intrinsics():
    params = {"Serial": "abc123", "Mac": "AA:BB:CC"}
    assert _evaluate({"Fn::Join": ["-", ["esp", {"Ref": "Serial"}]]}, params) == "esp-abc123"
    assert _evaluate({"Fn::Sub": "dev-${Serial}"}, params) == "dev-abc123"
    assert _evaluate({"Fn::Sub": ["${A}/${Serial}", {"A": "x"}]}, params) == "x/abc123"
    assert _evaluate({"Fn::Select": [1, {"Fn::Split": [":", {"Ref": "Mac"}]}]}, params) == "BB"
    assert _evaluate({"a": [{"Ref": "Serial"}], "b": 3}, params) == {"a": ["abc123"], "b": 3}
    with pytest.raises(ProvisioningError) as e:
        _evaluate({"Ref": "Missing"}, params)
    assert e.value.code == "InvalidParameters"


def test_shipped_template_is_valid():
    body = (RESOURCES_DIR / "provisioning" / "fleetdesk-claim.json").read_text()
    doc = validate_template_body(body)
    assert {r["Type"] for r in doc["Resources"].values()} == {"AWS::IoT::Thing", "AWS::IoT::Certificate",
                                                              "AWS::IoT::Policy"}
    with pytest.raises(ValueError):
        validate_template_body(json.dumps({"Resources": {"x": {"Type": "AWS::S3::Bucket"}}}))
