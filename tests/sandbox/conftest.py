"""Helpers for the sandbox core tests: boto3 clients and a real awsiotsdk MQTT5 device."""

from __future__ import annotations

import queue
import threading
import time
import uuid

import pytest


@pytest.fixture
def iot(sandbox):
    import boto3

    return boto3.client("iot", **sandbox.boto3_kwargs())


@pytest.fixture
def thing_name():
    return f"t-{uuid.uuid4().hex[:10]}"


class MqttDevice:
    """An awsiotsdk MQTT5 client (mTLS, TLS verification on, sandbox CA) with blocking helpers."""

    def __init__(self, info, cert_pem: str, key_pem: str, client_id: str) -> None:
        from awscrt import mqtt5
        from awsiot import mqtt5_client_builder

        self.connected = threading.Event()
        self.failed = threading.Event()
        self.disconnected = threading.Event()
        self.failure = None
        self.settings = None
        self.disconnected_at: float | None = None
        self.messages: queue.Queue = queue.Queue()
        self.client = mqtt5_client_builder.mtls_from_bytes(
            endpoint=info.mqtt_host, port=info.mqtt_port, cert_bytes=cert_pem.encode(), pri_key_bytes=key_pem.encode(),
            ca_bytes=open(info.ca_file, "rb").read(), client_id=client_id, clean_start=True,
            min_reconnect_delay_ms=5000, max_reconnect_delay_ms=10000,
            on_publish_received=lambda d: self.messages.put((d.publish_packet.topic, bytes(d.publish_packet.payload))),
            on_lifecycle_connection_success=self._connected,
            on_lifecycle_connection_failure=self._failed,
            on_lifecycle_disconnection=self._disconnected,
        )
        self._mqtt5 = mqtt5

    def _connected(self, data) -> None:
        self.settings = data.negotiated_settings
        self.connected.set()

    def _disconnected(self, data) -> None:
        if self.disconnected_at is None:
            self.disconnected_at = time.monotonic()
        self.disconnected.set()

    def _failed(self, data) -> None:
        self.failure = data.exception
        self.failed.set()

    def start(self) -> "MqttDevice":
        self.client.start()
        return self

    def connect(self, timeout: float = 15.0) -> bool:
        """Start and wait: True when connected, False when the connection attempt failed."""
        self.start()
        for _ in range(int(timeout * 20)):
            if self.connected.is_set():
                return True
            if self.failed.is_set():
                return False
            threading.Event().wait(0.05)
        raise TimeoutError("neither connected nor failed")

    def publish(self, topic: str, payload: bytes = b"{}", timeout: float = 10.0):
        """QoS 1 publish; returns the PUBACK reason code."""
        m = self._mqtt5
        fut = self.client.publish(m.PublishPacket(topic=topic, payload=payload, qos=m.QoS.AT_LEAST_ONCE))
        return fut.result(timeout).puback.reason_code

    def subscribe(self, topic_filter: str, timeout: float = 10.0):
        """Returns the SUBACK reason code of the single subscription."""
        m = self._mqtt5
        fut = self.client.subscribe(m.SubscribePacket(subscriptions=[m.Subscription(topic_filter=topic_filter,
                                                                                     qos=m.QoS.AT_LEAST_ONCE)]))
        return fut.result(timeout).reason_codes[0]

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
