"""Helpers for the sandbox core tests: boto3 clients and a real awsiotsdk MQTT5 device."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from helpers_sandbox import Mqtt5, mtls_builder


@pytest.fixture
def iot(sandbox):
    import boto3

    return boto3.client("iot", **sandbox.boto3_kwargs())


@pytest.fixture
def thing_name():
    return f"t-{uuid.uuid4().hex[:10]}"


class MqttDevice(Mqtt5):
    """An awsiotsdk MQTT5 device (mTLS, TLS verification on, sandbox CA) with blocking helpers.

    Besides :class:`Mqtt5`: notes when it was first disconnected; ``publish`` returns the
    PUBACK reason code; ``stop`` does not wait for the client to stop.
    """

    def __init__(self, info, cert_pem: str, key_pem: str, client_id: str) -> None:
        self.disconnected = threading.Event()
        self.disconnected_at: float | None = None
        build = mtls_builder(info, cert_pem, key_pem, client_id)
        super().__init__(lambda **callbacks: build(on_lifecycle_disconnection=self._disconnected, **callbacks))

    def _disconnected(self, data) -> None:
        if self.disconnected_at is None:
            self.disconnected_at = time.monotonic()
        self.disconnected.set()

    def publish(self, topic: str, payload: bytes = b"{}", timeout: float = 10.0):
        """QoS 1 publish; returns the PUBACK reason code."""
        return super().publish(topic, payload, timeout).puback.reason_code

    def receive(self, timeout: float = 5.0):
        return self.messages.get(timeout=timeout)

    def stop(self) -> None:
        try:
            self.client.stop()
        except Exception:  # noqa: BLE001 - already stopped
            pass


@pytest.fixture
def devices():
    """Factory for MqttDevice; stops every device at the end of the test."""
    made: list[MqttDevice] = []

    def make(info, identity, client_id=None) -> MqttDevice:
        dev = MqttDevice(info, identity.certificate_pem, identity.private_key_pem, client_id or identity.thing_name)
        made.append(dev)
        return dev

    yield make
    for dev in made:
        dev.stop()
