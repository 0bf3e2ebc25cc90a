"""Fixtures for fleet indexing tests: a sandbox of their own (counts must be exact), boto3 clients."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def own_sandbox(tmp_path_factory):
    """A fresh sandbox for one test module (stopped at its end)."""
    from fleetdesk.sandbox.child import start_sandbox, stop_sandbox

    proc, info = start_sandbox(tmp_path_factory.mktemp("sandbox-index") / "state")
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
