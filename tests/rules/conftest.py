"""Fixtures for rules and DynamoDB tests: a sandbox of their own (counts must be exact), boto3 clients."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def own_sandbox(tmp_path_factory):
    """A fresh sandbox for one test module (stopped at its end)."""
    from fleetdesk.sandbox.child import start_sandbox, stop_sandbox

    proc, info = start_sandbox(tmp_path_factory.mktemp("sandbox-rules") / "state")
    try:
        yield info
    finally:
        stop_sandbox(proc)


@pytest.fixture(scope="module")
def iot(own_sandbox):
    import boto3

    return boto3.client("iot", **own_sandbox.boto3_kwargs())


@pytest.fixture(scope="module")
def data(own_sandbox):
    import boto3

    return boto3.client("iot-data", **own_sandbox.boto3_kwargs())


@pytest.fixture(scope="module")
def dynamodb(own_sandbox):
    import boto3

    return boto3.client("dynamodb", **own_sandbox.boto3_kwargs())


@pytest.fixture(scope="module")
def device(own_sandbox, iot):
    """A real mTLS device (awsiotsdk MQTT5) with the thing policy."""
    from helpers_sandbox import Mqtt5, mtls_builder

    from fleetdesk.cloud.identity import create_device_identity

    ident = create_device_identity(iot, "rule-dev")
    dev = Mqtt5(mtls_builder(own_sandbox, ident.certificate_pem, ident.private_key_pem, "rule-dev"))
    assert dev.connect(), dev.failure
    dev.thing = "rule-dev"
    yield dev
    dev.stop()
