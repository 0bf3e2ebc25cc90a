"""Module-scoped fixtures for test folders whose counts must be exact: a sandbox of the module's
own and boto3 clients on it. A folder's conftest imports the ones it uses."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def own_sandbox(tmp_path_factory):
    """A fresh sandbox for one test module (stopped at its end)."""
    from fleetdesk.sandbox.child import start_sandbox, stop_sandbox

    proc, info = start_sandbox(tmp_path_factory.mktemp("sandbox") / "state")
    try:
        yield info
    finally:
        stop_sandbox(proc)


def _client(service: str, name: str):
    @pytest.fixture(scope="module", name=name)
    def client(own_sandbox):
        import boto3

        return boto3.client(service, **own_sandbox.boto3_kwargs())

    return client


iot = _client("iot", "iot")
data = _client("iot-data", "data")
dynamodb = _client("dynamodb", "dynamodb")
