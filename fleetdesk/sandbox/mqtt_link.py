"""The services' privileged MQTT link to the broker (aiomqtt over the internal listener).

One :class:`MqttLink` per service: subscribes to its request topics (remember ``#`` never
matches ``$aws/...``, so every ``$aws`` filter is spelled out), hands each message to an
async handler in arrival order, publishes replies without waiting for acks (order kept),
and reconnects if the broker restarts.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from typing import Any, Awaitable, Callable

import aiomqtt

log = logging.getLogger(__name__)

Handler = Callable[[str, bytes], Awaitable[None] | None]


class MqttLink:
    """A privileged internal client.

    Args:
        internal: ``ctx.internal_mqtt`` (host, port, username, password).
        name: short service name (used in the client id).
        filters: topic filters to subscribe to (QoS 1).
        handler: ``handler(topic, payload)``; may be sync or async. Exceptions are logged.
    """

    def __init__(self, internal: Any, name: str, filters: list[str], handler: Handler) -> None:
        self.internal = internal
        self.name = name
        self.filters = filters
        self.handler = handler
        self._client: aiomqtt.Client | None = None
        self._task: asyncio.Task | None = None
        self._ready = asyncio.Event()
        self._stopping = False

    async def start(self, timeout: float = 15.0) -> "MqttLink":
        """Connect and subscribe; returns once the subscriptions are in place."""
        self._task = asyncio.create_task(self._run(), name=f"mqtt-link-{self.name}")
        await asyncio.wait_for(self._ready.wait(), timeout)
        return self

    async def _run(self) -> None:
        delay = 0.2
        while not self._stopping:
            try:
                async with aiomqtt.Client(
                    self.internal.host, self.internal.port,
                    username=self.internal.username, password=self.internal.password,
                    identifier=f"fd-svc-{self.name}-{uuid.uuid4().hex[:8]}",
                    keepalive=30, max_queued_outgoing_messages=None,
                ) as client:
                    if self.filters:
                        await client.subscribe([(f, 1) for f in self.filters])
                    self._client = client
                    self._ready.set()
                    delay = 0.2
                    async for message in client.messages:
                        await self._dispatch(str(message.topic), message.payload)
            except asyncio.CancelledError:
                raise
            except aiomqtt.MqttError as exc:
                self._client = None
                if self._stopping:
                    return
                log.warning("%s: broker link lost (%s); reconnecting", self.name, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def _dispatch(self, topic: str, payload: Any) -> None:
        if isinstance(payload, str):
            payload = payload.encode()
        elif payload is None:
            payload = b""
        elif not isinstance(payload, (bytes, bytearray)):
            payload = str(payload).encode()
        try:
            result = self.handler(topic, bytes(payload))
            if asyncio.iscoroutine(result):
                await result
        except Exception:  # noqa: BLE001 - a bad message must never stop the service
            log.exception("%s: handler failed on %s", self.name, topic)

    def publish(self, topic: str, payload: dict | bytes | str, qos: int = 1) -> None:
        """Queue a publish (no ack wait; calls keep their order). Dropped if the link is down."""
        if isinstance(payload, dict):
            payload = json.dumps(payload, separators=(",", ":"))
        client = self._client
        if client is None:
            log.warning("%s: not connected; dropped publish to %s", self.name, topic)
            return
        paho = getattr(client, "_client", None)
        if paho is not None:
            paho.publish(topic, payload, qos=qos)
        else:  # pragma: no cover - aiomqtt internals changed
            asyncio.get_running_loop().create_task(client.publish(topic, payload, qos=qos))

    async def stop(self) -> None:
        """Disconnect and end the link task."""
        self._stopping = True
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
        self._client = None
