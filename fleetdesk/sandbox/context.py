"""What the sandbox's parts share: :class:`SandboxContext`, event hubs and event types.

Service modules (shadows, jobs, presence, provisioning, WSS) get the context in
``async def start(ctx)``; control-plane handlers get it as their first argument.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClientEvent:
    """A device connection seen by the broker (parsed from mosquitto's log).

    Only connections the sandbox authorized are reported (iot:Connect passed); the
    sandbox's own internal clients are never reported.

    Attributes:
        kind: "connected" or "disconnected".
        client_id: the MQTT client id.
        identity: the certificate's CN (mTLS clients) or the username of other clients.
        address: "ip:port" of the client (connected events; "" otherwise).
        reason: AWS disconnectReason for "disconnected" (CLIENT_INITIATED_DISCONNECT,
            CONNECTION_LOST, DUPLICATE_CLIENTID, MQTT_KEEP_ALIVE_TIMEOUT, FORBIDDEN_ACCESS,
            CLIENT_ERROR, SERVER_INITIATED_DISCONNECT, SERVER_ERROR), "" for "connected".
        ts_ms: epoch milliseconds when the sandbox saw it.
        thing_name: the thing the certificate is attached to (None if unknown).
        certificate_id: the certificate's id (None for non-certificate clients).
    """

    kind: str
    client_id: str
    identity: str
    address: str
    reason: str
    ts_ms: int
    thing_name: str | None = None
    certificate_id: str | None = None


@dataclass(frozen=True)
class RegistryChange:
    """Something in the registry changed.

    Attributes:
        kind: "certificate" | "policy" | "thing" | "thing_group" | "principal".
        action: "created" | "updated" | "deleted" | "attached" | "detached".
        name: the certificate id, policy/thing/group name.
        details: extra fields (e.g. {"status": "INACTIVE"}, {"target": arn}).
    """

    kind: str
    action: str
    name: str
    details: dict = field(default_factory=dict)


class EventHub:
    """Fan-out of events to listeners (sync or async callables) and queues."""

    def __init__(self) -> None:
        self._listeners: list[Callable[[Any], Any]] = []
        self._queues: list[asyncio.Queue] = []

    def listen(self, callback: Callable[[Any], Any]) -> Callable[[], None]:
        """Call ``callback(event)`` for each event (awaited if it is a coroutine function).

        Returns:
            A function that removes the listener.
        """
        self._listeners.append(callback)
        return lambda: self._listeners.remove(callback) if callback in self._listeners else None

    def queue(self, maxsize: int = 0) -> asyncio.Queue:
        """A queue that receives every event from now on (drop it with :meth:`unqueue`)."""
        q: asyncio.Queue = asyncio.Queue(maxsize)
        self._queues.append(q)
        return q

    def unqueue(self, q: asyncio.Queue) -> None:
        if q in self._queues:
            self._queues.remove(q)

    async def emit(self, event: Any) -> None:
        """Deliver ``event``; awaits async listeners. A failing listener is logged, not raised."""
        for q in list(self._queues):
            try:
                q.put_nowait(event)
            except asyncio.QueueFull:
                log.warning("event queue full; dropped %s", event)
        for cb in list(self._listeners):
            try:
                result = cb(event)
                if inspect.isawaitable(result):
                    await result
            except Exception:  # one bad listener must not stop the others
                log.exception("event listener %r failed on %s", cb, event)


@dataclass
class InternalMqtt:
    """A privileged broker login (plain MQTT on 127.0.0.1) allowed on every topic incl. ``$aws/#``."""

    host: str
    port: int
    username: str
    password: str


@dataclass
class SandboxContext:
    """Everything a sandbox service needs.

    Attributes:
        state_dir: the sandbox state dir (services may keep files in ``state_dir/<name>``).
        region, account_id: used in ARNs.
        registry: the :class:`~fleetdesk.sandbox.registry.Registry`.
        ca: the :class:`~fleetdesk.sandbox.ca.SandboxCA` (``ca.issue``, ``ca.sign_csr``, ...).
        mqtt_host, mqtt_port: the devices' mTLS listener.
        ws_port: the broker's raw WebSockets listener (plain, 127.0.0.1 only).
        ws_public_port: what clients are told to use for MQTT over WSS (defaults to
            ``ws_port``; a SigV4-checking proxy sets its own port here in ``start``).
        internal_mqtt: the privileged login for services.
        https_port, http_endpoint: the control plane (``https://127.0.0.1:PORT``).
        port_base: ports port_base..+3 are the core's; +4..+9 are free for services (0 = any).
        credentials: {"aws_access_key_id", "aws_secret_access_key"} for SigV4 clients.
        events: hub of :class:`ClientEvent`.
        registry_changed: hub of :class:`RegistryChange`.
        server_ssl: an ``ssl.SSLContext`` with the sandbox's server certificate (for
            services that open their own TLS ports).
        authorizer: the broker authorizer (``await ctx.authorizer.sync()`` after changing
            the registry directly, e.g. from fleet provisioning).
    """

    state_dir: Path
    region: str
    account_id: str
    registry: Any
    ca: Any
    mqtt_host: str
    mqtt_port: int
    ws_port: int
    internal_mqtt: InternalMqtt
    https_port: int
    port_base: int
    credentials: dict
    ws_public_port: int = 0
    events: EventHub = field(default_factory=EventHub)
    registry_changed: EventHub = field(default_factory=EventHub)
    server_ssl: Any = None
    authorizer: Any = None
    broker: Any = None
    extras: dict = field(default_factory=dict)

    @property
    def http_endpoint(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"

    @property
    def ca_file(self) -> Path:
        return self.ca.ca_file

    async def changed(self, kind: str, action: str, name: str, **details) -> None:
        """Announce a registry change (the authorizer applies it before this returns)."""
        await self.registry_changed.emit(RegistryChange(kind, action, name, details))
