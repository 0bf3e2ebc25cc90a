"""Helpers for tests that talk to the sandbox, shared by several test dirs.

Importable as ``helpers_sandbox``: the root ``tests/conftest.py`` puts ``tests/`` on
``sys.path`` (pytest's default rootdir-based import mode), for test dirs with or without
an ``__init__.py``.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from pathlib import Path


def poll(fn, timeout=30.0, every=0.3):
    """Call ``fn`` until it returns something truthy (returned); AssertionError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"condition not met within {timeout}s (last: {last!r})")


def der(pem: str, key: bool = False) -> bytes:
    """A PEM certificate (or, with ``key``, a private key) as DER: what the firmware's /certs/ hold."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    if key:
        k = serialization.load_pem_private_key(pem.encode(), None)
        return k.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.TraditionalOpenSSL,
                               serialization.NoEncryption())
    return x509.load_pem_x509_certificate(pem.encode()).public_bytes(serialization.Encoding.DER)


def next_json(messages: queue.Queue, topic: str, timeout: float = 10.0) -> dict:
    """The next ``(topic, payload)`` on ``messages`` for ``topic`` (others are dropped), parsed as JSON."""
    end = time.monotonic() + timeout
    while True:
        left = end - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"nothing on {topic}")
        try:
            t, p = messages.get(timeout=left)
        except queue.Empty:
            raise TimeoutError(f"nothing on {topic}") from None
        if t == topic:
            return json.loads(p)


def mtls_builder(info, cert_pem: str, key_pem: str, client_id: str):
    """A builder of awsiotsdk MQTT5 clients connecting to the sandbox over mTLS (TLS verified)."""
    from awsiot import mqtt5_client_builder

    def build(**callbacks):
        return mqtt5_client_builder.mtls_from_bytes(
            endpoint=info.mqtt_host, port=info.mqtt_port, cert_bytes=cert_pem.encode(),
            pri_key_bytes=key_pem.encode(), ca_bytes=Path(info.ca_file).read_bytes(), client_id=client_id,
            clean_start=True, min_reconnect_delay_ms=5000, max_reconnect_delay_ms=10000, **callbacks)
    return build


class Mqtt5:
    """An awsiotsdk MQTT5 client (mTLS or WSS) with blocking helpers and a message queue.

    Args:
        client_builder: called with the lifecycle/publish callbacks, returns the client.
    """

    def __init__(self, client_builder) -> None:
        self.connected = threading.Event()
        self.failed = threading.Event()
        self.stopped = threading.Event()
        self.failure = None
        self.settings = None
        self.messages: queue.Queue = queue.Queue()
        self.client = client_builder(
            on_publish_received=lambda d: self.messages.put((d.publish_packet.topic, bytes(d.publish_packet.payload))),
            on_lifecycle_connection_success=self._connected,
            on_lifecycle_connection_failure=self._failed,
            on_lifecycle_stopped=lambda d: self.stopped.set(),
        )

    def _connected(self, data) -> None:
        self.settings = data.negotiated_settings
        self.connected.set()

    def _failed(self, data) -> None:
        self.failure = data.exception
        connack = getattr(data, "connack_packet", None)
        self.failure_code = connack.reason_code if connack is not None else None
        self.failed.set()

    def start(self) -> "Mqtt5":
        self.client.start()
        return self

    def connect(self, timeout: float = 15.0) -> bool:
        """Start; True when connected, False when the first attempt failed.

        A CONNECT refused for the client id's rate (IoT Core: 1 a second, MQTT5 CONNACK 0x9F,
        e.g. a reconnect right after the previous connection) is not a failure: the SDK's own
        retry after its back-off is waited for, as a device would.
        """
        from awscrt import mqtt5

        self.start()
        for _ in range(int((timeout + 30) * 20)):
            if self.connected.is_set():
                return True
            if self.failed.is_set():
                if getattr(self, "failure_code", None) != mqtt5.ConnectReasonCode.CONNECTION_RATE_EXCEEDED:
                    return False
                self.failed.clear()
            threading.Event().wait(0.05)
        raise TimeoutError("neither connected nor failed")

    def subscribe(self, topic_filter: str, timeout: float = 10.0) -> int:
        """The SUBACK reason code of the single QoS 1 subscription."""
        from awscrt import mqtt5

        fut = self.client.subscribe(mqtt5.SubscribePacket(subscriptions=[
            mqtt5.Subscription(topic_filter=topic_filter, qos=mqtt5.QoS.AT_LEAST_ONCE)]))
        return fut.result(timeout).reason_codes[0]

    def publish(self, topic: str, payload: bytes | dict, timeout: float = 10.0):
        """QoS 1 publish (a dict is sent as JSON); returns the PublishCompletionData."""
        from awscrt import mqtt5

        if isinstance(payload, dict):
            payload = json.dumps(payload).encode()
        fut = self.client.publish(mqtt5.PublishPacket(topic=topic, payload=payload, qos=mqtt5.QoS.AT_LEAST_ONCE))
        return fut.result(timeout)

    def expect(self, topic: str, timeout: float = 10.0) -> dict:
        """The next message on ``topic`` (others are dropped), parsed as JSON."""
        return next_json(self.messages, topic, timeout)

    def stop(self, timeout: float = 5.0) -> None:
        from awscrt import mqtt5

        try:
            self.client.stop(mqtt5.DisconnectPacket())  # a clean MQTT DISCONNECT
        except Exception:  # noqa: BLE001
            pass
        self.stopped.wait(timeout)


async def connected_device(info, iot, tmp_dir: Path, name: str, **settings):
    """A new thing with its own certificate, connected over mTLS with fleetdesk's cloud ``Connection``.

    The cert and key are written to ``tmp_dir`` (the key 0600). Fast reconnects (100-500 ms) and
    a clean session; ``settings`` adds or overrides ConnectionSettings fields.

    Returns:
        (the started and connected Connection, the DeviceIdentity).
    """
    import asyncio

    from fleetdesk.cloud.connection import Connection
    from fleetdesk.cloud.identity import create_device_identity
    from fleetdesk.cloud.settings import ConnectionSettings
    from fleetdesk.paths import write_private

    ident = await asyncio.to_thread(create_device_identity, iot, name)
    cert, key = tmp_dir / f"{name}.crt", tmp_dir / f"{name}.key"
    cert.write_text(ident.certificate_pem)
    write_private(key, ident.private_key_pem.encode())
    options = {"clean_start": True, "min_reconnect_ms": 100, "max_reconnect_ms": 500, **settings}
    conn = Connection(ConnectionSettings(host=info.mqtt_host, port=info.mqtt_port, client_id=name,
                                         ca_file=info.ca_file, cert_file=str(cert), key_file=str(key), **options))
    await conn.start()
    await conn.wait_connected(15)
    return conn, ident
