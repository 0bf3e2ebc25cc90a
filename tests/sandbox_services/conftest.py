"""Fixtures for the sandbox-services tests: boto3 clients, things with certs, real awsiotsdk clients."""

from __future__ import annotations

import json
import queue
import threading
import uuid
from concurrent.futures import Future
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def iot(sandbox):
    import boto3

    return boto3.client("iot", **sandbox.boto3_kwargs())


@pytest.fixture(scope="session")
def data(sandbox):
    import boto3

    return boto3.client("iot-data", **sandbox.boto3_kwargs())


@pytest.fixture
def thing_name():
    return f"svc-{uuid.uuid4().hex[:10]}"


class Mqtt5:
    """An awsiotsdk MQTT5 client (mTLS or WSS) with blocking helpers and a message queue."""

    def __init__(self, client_builder) -> None:
        self.connected = threading.Event()
        self.failed = threading.Event()
        self.stopped = threading.Event()
        self.failure = None
        self.messages: queue.Queue = queue.Queue()
        self.client = client_builder(
            on_publish_received=lambda d: self.messages.put((d.publish_packet.topic, bytes(d.publish_packet.payload))),
            on_lifecycle_connection_success=lambda d: self.connected.set(),
            on_lifecycle_connection_failure=self._failed,
            on_lifecycle_stopped=lambda d: self.stopped.set(),
        )

    def _failed(self, data) -> None:
        self.failure = data.exception
        self.failed.set()

    def connect(self, timeout: float = 15.0) -> bool:
        """Start; True when connected, False when the first attempt failed."""
        self.client.start()
        for _ in range(int(timeout * 20)):
            if self.connected.is_set():
                return True
            if self.failed.is_set():
                return False
            threading.Event().wait(0.05)
        raise TimeoutError("neither connected nor failed")

    def subscribe(self, topic_filter: str, timeout: float = 10.0) -> int:
        from awscrt import mqtt5

        fut = self.client.subscribe(mqtt5.SubscribePacket(subscriptions=[
            mqtt5.Subscription(topic_filter=topic_filter, qos=mqtt5.QoS.AT_LEAST_ONCE)]))
        return fut.result(timeout).reason_codes[0]

    def publish(self, topic: str, payload: bytes | dict, timeout: float = 10.0):
        from awscrt import mqtt5

        if isinstance(payload, dict):
            payload = json.dumps(payload).encode()
        fut = self.client.publish(mqtt5.PublishPacket(topic=topic, payload=payload, qos=mqtt5.QoS.AT_LEAST_ONCE))
        return fut.result(timeout)

    def expect(self, topic: str, timeout: float = 10.0) -> dict:
        """The next message on ``topic`` (others are dropped), parsed as JSON."""
        import time

        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"nothing on {topic}")
            try:
                t, p = self.messages.get(timeout=left)
            except queue.Empty:
                raise TimeoutError(f"nothing on {topic}") from None
            if t == topic:
                return json.loads(p)

    def stop(self, timeout: float = 5.0) -> None:
        from awscrt import mqtt5

        try:
            self.client.stop(mqtt5.DisconnectPacket())  # a clean MQTT DISCONNECT
        except Exception:  # noqa: BLE001
            pass
        self.stopped.wait(timeout)


def mtls_builder(info, cert_pem: str, key_pem: str, client_id: str):
    from awsiot import mqtt5_client_builder

    def build(**callbacks):
        return mqtt5_client_builder.mtls_from_bytes(
            endpoint=info.mqtt_host, port=info.mqtt_port, cert_bytes=cert_pem.encode(),
            pri_key_bytes=key_pem.encode(), ca_bytes=Path(info.ca_file).read_bytes(), client_id=client_id,
            clean_start=True, min_reconnect_delay_ms=5000, max_reconnect_delay_ms=10000, **callbacks)
    return build


@pytest.fixture
def clients():
    """Factory of started-and-connected-on-demand Mqtt5 clients; all stopped at the end."""
    made: list[Mqtt5] = []

    def make(builder) -> Mqtt5:
        c = Mqtt5(builder)
        made.append(c)
        return c

    yield make
    for c in made:
        c.stop()


@pytest.fixture
def device(sandbox, iot, thing_name, clients):
    """A thing with a cert and the thing policy, connected over mTLS as an awsiotsdk MQTT5 client."""
    from fleetdesk.cloud.identity import create_device_identity

    ident = create_device_identity(iot, thing_name)
    dev = clients(mtls_builder(sandbox, ident.certificate_pem, ident.private_key_pem, thing_name))
    assert dev.connect(), dev.failure
    dev.identity = ident
    dev.thing = thing_name
    return dev


def rr_options():
    from awscrt import mqtt_request_response

    return mqtt_request_response.ClientOptions(max_request_response_subscriptions=6, max_streaming_subscriptions=4,
                                               operation_timeout_in_seconds=10)


def result(fut: Future, timeout: float = 12.0):
    return fut.result(timeout)


def internal_login(info) -> dict:
    """The sandbox's privileged internal MQTT login (for observers in tests)."""
    creds = json.loads((Path(info.state_dir) / "credentials.json").read_text())
    return {"username": creds["internal_username"], "password": creds["internal_password"]}


def internal_port(info) -> int:
    """The broker's internal (plain, password) listener port, read from the generated config."""
    blocks = (Path(info.state_dir) / "broker" / "mosquitto.conf").read_text().split("\nlistener ")[1:]
    for block in blocks:
        if "cafile" not in block and "protocol websockets" not in block:
            return int(block.split()[0])
    raise RuntimeError("no internal listener in mosquitto.conf")


class Observer:
    """A privileged aiomqtt-free observer (paho, threaded) subscribed to given filters."""

    def __init__(self, info, filters: list[str]) -> None:
        import paho.mqtt.client as paho

        login = internal_login(info)
        self.messages: queue.Queue = queue.Queue()
        self.ready = threading.Event()
        self.c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"obs-{uuid.uuid4().hex[:8]}")
        self.c.username_pw_set(login["username"], login["password"])
        self.c.on_message = lambda c, u, m: self.messages.put((m.topic, bytes(m.payload)))
        self.c.on_subscribe = lambda *a: self.ready.set()
        self.c.on_connect = lambda c, u, f, rc, p=None: c.subscribe([(f, 1) for f in filters])
        self.c.connect("127.0.0.1", internal_port(info))
        self.c.loop_start()
        assert self.ready.wait(10), "observer did not subscribe"

    def expect(self, topic: str, timeout: float = 10.0) -> dict:
        import time

        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"nothing on {topic}")
            try:
                t, p = self.messages.get(timeout=left)
            except queue.Empty:
                raise TimeoutError(f"nothing on {topic}") from None
            if t == topic:
                return json.loads(p)

    def publish(self, topic: str, payload: bytes) -> None:
        self.c.publish(topic, payload, qos=1).wait_for_publish(5)

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


@pytest.fixture
def observer(sandbox):
    made: list[Observer] = []

    def make(filters: list[str]) -> Observer:
        o = Observer(sandbox, filters)
        made.append(o)
        return o

    yield make
    for o in made:
        o.close()
