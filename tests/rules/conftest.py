"""Fixtures for rules and DynamoDB tests: a sandbox of their own (counts must be exact), boto3 clients."""

from __future__ import annotations

import pytest
from own_sandbox import data, dynamodb, iot, own_sandbox  # noqa: F401 - fixtures


@pytest.fixture(scope="module")
def device(own_sandbox, iot):  # noqa: F811 - the fixtures imported above
    """A real mTLS device (awsiotsdk MQTT5) with the thing policy."""
    from helpers_sandbox import Mqtt5, mtls_builder

    from fleetdesk.cloud.identity import create_device_identity

    ident = create_device_identity(iot, "rule-dev")
    dev = Mqtt5(mtls_builder(own_sandbox, ident.certificate_pem, ident.private_key_pem, "rule-dev"))
    assert dev.connect(), dev.failure
    dev.thing = "rule-dev"
    yield dev
    dev.stop()
