"""Fixtures for the sandbox-services tests: boto3 clients, things with certs, real awsiotsdk clients."""

from __future__ import annotations

import json
import queue
import threading
import uuid
from concurrent.futures import Future
from pathlib import Path

import pytest
from helpers_sandbox import Mqtt5, mtls_builder, next_json


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
        return next_json(self.messages, topic, timeout)

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
