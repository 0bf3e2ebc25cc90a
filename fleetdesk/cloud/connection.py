"""One MQTT5 connection (awsiotsdk/awscrt) for the app, handed to asyncio.

awscrt calls back on its own native threads. :class:`Connection` never runs user code
there: incoming messages are queued and drained on the asyncio loop in batches, state
changes are posted with ``loop.call_soon_threadsafe``. Handlers, state listeners and async
iterators therefore always run on the loop that called :meth:`Connection.start` (with
qasync, the Qt main thread; the GUI still goes through gui/bridge.py).

Example::

    conn = Connection(settings)
    await conn.start()
    await conn.wait_connected(10)
    await conn.subscribe("dt/+/env", on_message, qos=1)
    await conn.publish("dt/t1/env", {"temperature": 21.5})
    await conn.stop()
"""

from __future__ import annotations

import asyncio
import functools
import collections
import enum
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable

from fleetdesk.cloud.errors import ConnectFailed
from fleetdesk.cloud.fanout import Fanout
from fleetdesk.cloud.settings import ConnectionSettings
from fleetdesk.cloud.topics import covers, matches
from fleetdesk.errors import CloudError

log = logging.getLogger(__name__)
# Longest run of message handlers before the loop gets a turn (keeps a qasync UI responsive).
DRAIN_BUDGET_S = 0.010

# CONNACK reasons after which retrying cannot help.
PERMANENT_CONNACK = {
    "NOT_AUTHORIZED", "BAD_USERNAME_OR_PASSWORD", "CLIENT_IDENTIFIER_NOT_VALID", "BANNED",
    "BAD_AUTHENTICATION_METHOD", "UNSUPPORTED_PROTOCOL_VERSION",
}
# CONNACK reasons that only say "not now": IoT Core allows one CONNECT per second per client id
# (an app restarted at once meets its own last connection); the reconnect backoff gets in, so
# these do not count towards ``initial_attempts``.
TRANSIENT_CONNACK = {"CONNECTION_RATE_EXCEEDED", "SERVER_BUSY", "QUOTA_EXCEEDED"}
ADVICE = {
    "AWS_IO_SOCKET_CONNECTION_REFUSED": "is the broker running? (`fleetdesk sandbox up` for the sandbox)",
    "AWS_IO_DNS_INVALID_NAME": "check the endpoint host name",
    "AWS_IO_TLS_ERROR_NEGOTIATION_FAILURE": "TLS failed: check the CA file, the certificate and that it is ACTIVE",
    "NOT_AUTHORIZED": "the credentials are not allowed to connect: check the certificate status and policy",
    "BAD_USERNAME_OR_PASSWORD": "check the username/password",
}


# AWS IoT Core: at most 8 topic filters in one SUBSCRIBE (not adjustable; message broker quotas)
FILTERS_PER_SUBSCRIBE = 8
PUBLISHES_PER_SECOND = 90.0  # the app's publishes, under IoT Core's 100 per second per connection


class State(str, enum.Enum):
    """Connection states, in the order a healthy connection goes through them."""

    IDLE = "idle"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    FAILED = "failed"
    STOPPED = "stopped"


@dataclass(frozen=True)
class StateEvent:
    """A state change. ``reason`` says why (for reconnecting/failed); ``attempt`` counts failures."""

    state: State
    reason: str = ""
    attempt: int = 0
    at: float = field(default_factory=time.time)


@dataclass
class Message:
    """An incoming PUBLISH.

    For subscriptions made with ``manual_ack=True`` the broker keeps a QoS1 message
    unacknowledged (and redelivers it after a reconnect) until :meth:`ack` is called: call it
    only once the message is safely stored.
    """

    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    received: float = 0.0
    _ack: Callable[[], None] | None = field(default=None, repr=False)

    def ack(self) -> None:
        """Acknowledge a manually acknowledged QoS1 message (no-op otherwise, idempotent)."""
        fn, self._ack = self._ack, None
        if fn is not None:
            try:
                fn()
            except Exception as exc:  # noqa: BLE001 - connection already gone: the broker will redeliver
                log.debug("puback for %s not sent: %s", self.topic, exc)

    def json(self) -> Any:
        """The payload parsed as JSON (raises ValueError on bad JSON)."""
        return json.loads(self.payload)


Handler = Callable[[Message], Any]

# Native clients being stopped: kept referenced until awscrt reports them stopped, so the
# garbage collector never frees one while its event-loop thread still calls back into it.
_LINGERING: set = set()


@dataclass
class _Sub:
    topic_filter: str
    qos: int
    manual_ack: bool
    handlers: list[Handler] = field(default_factory=list)
    sent: bool = True  # False: covered by a broader subscription (no duplicate deliveries)


def _payload_bytes(payload: bytes | str | dict | list | None) -> bytes:
    if payload is None:
        return b""
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, str):
        return payload.encode()
    return json.dumps(payload, separators=(",", ":")).encode()


async def _await_crt(cfut: Any, timeout: float) -> Any:
    """Await an awscrt concurrent future without ever cancelling it (awscrt completes it later
    and would raise InvalidStateError) and without leaving its exception unretrieved."""
    afut = asyncio.wrap_future(cfut)
    afut.add_done_callback(lambda f: f.cancelled() or f.exception())
    return await asyncio.wait_for(asyncio.shield(afut), timeout)


def _exc_name(exc: BaseException | None) -> str:
    if exc is None:
        return ""
    return getattr(exc, "name", None) or type(exc).__name__


class Connection:
    """An asyncio-friendly MQTT5 client with reconnect, state events and batched dispatch.

    Args:
        settings: endpoint and credentials; checked in :meth:`start`.
    """

    def __init__(self, settings: ConnectionSettings) -> None:
        self.settings = settings
        self._client: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._state = StateEvent(State.IDLE)
        self._states: Fanout[StateEvent] = Fanout("state")
        self._subs: dict[str, _Sub] = {}
        self._routes: dict[str, list[_Sub]] = {}  # topic -> matching subs; reset when _subs changes
        self._inbox: collections.deque = collections.deque()
        self._drain_scheduled = False
        self._ever_connected = False
        self._failures = 0
        self._stopped: asyncio.Event | None = None
        self._connected: asyncio.Event | None = None
        self.stats: collections.Counter[str] = collections.Counter()
        self._publish_pace: Any = None  # aiolimiter bucket, made on the loop of the first publish
        # (un)subscribes left for the next connection: while offline nothing waits on the broker
        self._sub_later: set[str] = set()
        self._unsub_later: set[str] = set()

    # ----------------------------------------------------------------- lifecycle
    @property
    def state(self) -> StateEvent:
        """The latest state event."""
        return self._state

    async def start(self) -> None:
        """Check the settings and start connecting (returns at once; see :meth:`wait_connected`).

        Raises:
            ConfigError: a file is missing or the settings are incomplete.
        """
        if self._client is not None:
            return
        self.settings.check()
        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        self._connected = asyncio.Event()
        self._failures = 0
        self._client = self._build_client()
        self._set_state(StateEvent(State.CONNECTING))
        self._client.start()

    async def wait_connected(self, timeout: float = 15.0) -> None:
        """Wait until connected.

        Raises:
            ConnectFailed: the connection failed for good, or ``timeout`` passed.
        """
        if self._connected is None:
            raise CloudError("the connection was not started", "call start() first")
        deadline = time.monotonic() + timeout
        while not self._connected.is_set():
            if self._state.state in (State.FAILED, State.STOPPED):
                raise self._failure_error()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ConnectFailed(
                    f"no connection to {self.settings.host}:{self.settings.port} after {timeout:.0f} s"
                    + (f" ({self._state.reason})" if self._state.reason else ""),
                    ADVICE.get(self._state.reason, "check the endpoint and that the broker is running"),
                    reason=self._state.reason or "timeout",
                )
            waiter = asyncio.ensure_future(self._connected.wait())
            try:
                await asyncio.wait_for(asyncio.shield(waiter), timeout=min(remaining, 0.2))
            except asyncio.TimeoutError:
                pass
            finally:
                waiter.cancel()

    def _failure_error(self) -> ConnectFailed:
        reason = self._state.reason
        return ConnectFailed(
            f"cannot connect to {self.settings.host}:{self.settings.port}: {reason or self._state.state.value}",
            ADVICE.get(reason, "check the endpoint, the credentials and that the broker is running"),
            reason=reason,
        )

    async def stop(self, timeout: float = 15.0) -> None:
        """Disconnect and release the native client. Safe to call twice."""
        client, self._client = self._client, None
        if client is None:
            return
        _LINGERING.add(client)
        self._lingering = client
        try:
            client.stop()
        except Exception as exc:  # noqa: BLE001 - stopping a client that already failed
            log.debug("stop: %s", exc)
        if self._stopped is not None:
            try:
                await asyncio.wait_for(self._stopped.wait(), timeout)
            except asyncio.TimeoutError:
                log.warning("MQTT client did not report stopped within %.0f s", timeout)
        self._drain()
        self._set_state(StateEvent(State.STOPPED))

    async def __aenter__(self) -> "Connection":
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    # ----------------------------------------------------------------- state events
    def add_state_listener(self, fn: Callable[[StateEvent], Any]) -> Callable[[], None]:
        """Call ``fn(event)`` on the loop for every state change; returns a remover."""
        return self._states.add_listener(fn)

    async def states(self) -> AsyncIterator[StateEvent]:
        """Async iterator of state events, starting with the one current when iteration starts."""
        async for ev in self._states.stream(first=self._state):
            yield ev

    def _set_state(self, ev: StateEvent) -> None:
        if ev.state == self._state.state and ev.reason == self._state.reason and ev.attempt == self._state.attempt:
            return
        self._state = ev
        log.info("mqtt %s %s", ev.state.value, ev.reason)
        self._states.emit(ev)

    def _post(self, fn: Callable, *args: Any) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # loop closed while we were shutting down
            pass

    # native-thread callbacks --------------------------------------------------
    def _on_attempt(self, data: Any) -> None:
        self._post(self._attempting)

    def _on_success(self, data: Any) -> None:
        session_present = bool(getattr(data.connack_packet, "session_present", False))
        self._post(self._connected_ok, session_present)

    def _on_failure(self, data: Any) -> None:
        reason = _exc_name(data.exception)
        connack = getattr(data, "connack_packet", None)
        if connack is not None and getattr(connack, "reason_code", None) is not None:
            code = connack.reason_code
            reason = getattr(code, "name", str(code))
        self._post(self._connect_failed, reason)

    def _on_disconnect(self, data: Any) -> None:
        reason = _exc_name(data.exception)
        pkt = getattr(data, "disconnect_packet", None)
        if pkt is not None and getattr(pkt, "reason_code", None) is not None:
            reason = getattr(pkt.reason_code, "name", str(pkt.reason_code))
        self._post(self._disconnected, reason)

    def _on_stopped(self, data: Any) -> None:
        self._post(self._mark_stopped)

    # loop-side state handling ---------------------------------------------------
    def _attempting(self) -> None:
        if self._state.state in (State.RECONNECTING, State.CONNECTING, State.FAILED, State.STOPPED):
            return
        self._set_state(StateEvent(State.CONNECTING))

    def _connected_ok(self, session_present: bool) -> None:
        self._ever_connected = True
        self._failures = 0
        self.stats["connects"] += 1
        if self._connected is not None:
            self._connected.set()
        self._set_state(StateEvent(State.CONNECTED))
        if not session_present:  # a new session holds nothing: subscribe what we have, nothing to drop
            self._sub_later.clear()
            self._unsub_later.clear()
            if self._subs:
                asyncio.ensure_future(self._resubscribe())
        elif self._sub_later or self._unsub_later:
            asyncio.ensure_future(self._catch_up())

    def _connect_failed(self, reason: str) -> None:
        self.stats["connect_failures"] += 1
        if reason in TRANSIENT_CONNACK:
            self._set_state(StateEvent(State.RECONNECTING, reason, self._failures))
            return
        self._failures += 1
        permanent = reason in PERMANENT_CONNACK
        if not self._ever_connected and (permanent or self._failures >= self.settings.initial_attempts):
            self._set_state(StateEvent(State.FAILED, reason, self._failures))
            client, self._client = self._client, None
            if client is not None:
                _LINGERING.add(client)
                self._lingering = client
                client.stop()
            return
        self._set_state(StateEvent(State.RECONNECTING, reason, self._failures))

    def _disconnected(self, reason: str) -> None:
        if self._connected is not None:
            self._connected.clear()
        if self._client is None or self._state.state in (State.FAILED, State.STOPPED):
            return
        self.stats["disconnects"] += 1
        self._set_state(StateEvent(State.RECONNECTING, reason or "connection lost", self._failures))

    def _mark_stopped(self) -> None:
        _LINGERING.discard(getattr(self, "_lingering", None))
        if self._stopped is not None:
            self._stopped.set()

    # ----------------------------------------------------------------- build
    def _build_client(self) -> Any:
        from fleetdesk.cloud.client_factory import build_client

        return build_client(self.settings, self)

    # ----------------------------------------------------------------- messages
    def _on_publish(self, data: Any) -> None:
        """Native thread: queue the message; take manual ack control where asked."""
        pkt = data.publish_packet
        topic = pkt.topic
        qos = int(pkt.qos)
        ack = None
        if qos and data.acquire_publish_acknowledgement_control is not None:
            if any(sub.manual_ack for sub in self._route(topic)):
                client = self._client
                handle = data.acquire_publish_acknowledgement_control()
                if client is not None:
                    ack = functools.partial(client.invoke_publish_acknowledgement, handle)
        msg = Message(topic, bytes(pkt.payload or b""), qos, bool(pkt.retain), time.time(), ack)
        self._inbox.append(msg)
        if not self._drain_scheduled:
            self._drain_scheduled = True
            self._post(self._drain)

    def _route(self, topic: str) -> list[_Sub]:
        """Subscriptions whose filter matches ``topic`` (cached per topic; any thread)."""
        cache = self._routes
        subs = cache.get(topic)
        if subs is None:
            subs = [sub for sub in list(self._subs.values()) if matches(sub.topic_filter, topic)]
            if len(cache) > 50_000:
                cache = self._routes = {}
            cache[topic] = subs
        return subs

    def _drain(self) -> None:
        self._drain_scheduled = False
        inbox = self._inbox
        deadline = time.perf_counter() + DRAIN_BUDGET_S
        while inbox:
            if time.perf_counter() > deadline:  # yield to the loop (with qasync: the UI), then go on
                self._drain_scheduled = True
                assert self._loop is not None  # the inbox is drained on the loop that filled it
                self._loop.call_soon(self._drain)
                return
            msg = inbox.popleft()
            self.stats["received"] += 1
            delivered = False
            for sub in self._route(msg.topic):
                for handler in list(sub.handlers):
                    delivered = True
                    try:
                        result = handler(msg)
                        if asyncio.iscoroutine(result):
                            asyncio.ensure_future(result)
                    except Exception:
                        self.stats["handler_errors"] += 1
                        log.exception("handler for %s failed", sub.topic_filter)
            if not delivered:
                msg.ack()

    async def subscribe(self, topic_filter: str, handler: Handler, *, qos: int = 1,
                        manual_ack: bool = False) -> Callable[[], Any]:
        """Deliver messages matching ``topic_filter`` to ``handler(msg)`` on the loop.

        Handlers may be plain functions or coroutine functions. Several handlers may share a
        filter (one MQTT subscription). Subscriptions are restored after a reconnect that
        lost the session.

        Args:
            topic_filter: MQTT filter (``$aws/...`` must be named explicitly; ``#`` skips it).
            handler: called with a :class:`Message`.
            qos: 0 or 1.
            manual_ack: QoS1 messages stay unacknowledged until ``msg.ack()``.

        Returns:
            An async callable that removes this handler (and unsubscribes when it was the last).

        Raises:
            CloudError: the broker refused the subscription (not authorized).
        """
        sub = self._subs.get(topic_filter)
        new = sub is None
        if new:
            sub = _Sub(topic_filter, qos, manual_ack)
            # A filter inside an existing one is served by it: the broker would otherwise send
            # every matching message once per overlapping subscription.
            sub.sent = not any(o.sent and o.qos >= qos and covers(o.topic_filter, topic_filter)
                               for o in self._subs.values())
            self._subs[topic_filter] = sub
            self._routes = {}
        assert sub is not None  # found, or made just above
        sub.handlers.append(handler)
        if new and sub.sent:
            narrower = [o for o in self._subs.values()
                        if o is not sub and o.sent and qos >= o.qos and covers(topic_filter, o.topic_filter)]
            if self._client is not None:
                try:
                    await self._send_subscribe([sub])
                except Exception:
                    self._subs.pop(topic_filter, None)
                    self._routes = {}
                    raise
            for o in narrower:
                o.sent = False
                await self._unsubscribe(o.topic_filter)

        async def remove() -> None:
            if handler in sub.handlers:
                sub.handlers.remove(handler)
            if not sub.handlers and self._subs.get(topic_filter) is sub:
                del self._subs[topic_filter]
                self._routes = {}
                if not sub.sent:
                    return
                orphans = [o for o in self._subs.values() if not o.sent and not any(
                    p.sent and p.qos >= o.qos and covers(p.topic_filter, o.topic_filter)
                    for p in self._subs.values())]
                for o in orphans:
                    o.sent = True
                if orphans and not self._online():
                    self._sub_later.update(o.topic_filter for o in orphans)
                elif orphans:
                    try:
                        await self._send_subscribe(orphans)
                    except Exception as exc:  # noqa: BLE001 - logged; the next reconnect resubscribes
                        log.warning("re-subscribing %s failed: %s", [o.topic_filter for o in orphans], exc)
                await self._unsubscribe(topic_filter)

        return remove

    async def _send_subscribe(self, subs: list[_Sub], timeout: float = 15.0) -> None:
        """SUBSCRIBE ``subs``, at most :data:`FILTERS_PER_SUBSCRIBE` filters a packet (AWS IoT Core
        refuses a SUBSCRIBE of more); every chunk is sent even when one is refused."""
        from awscrt import mqtt5

        client = self._client
        if client is None:
            return
        bad: list[tuple[str, str]] = []
        for i in range(0, len(subs), FILTERS_PER_SUBSCRIBE):
            chunk = subs[i:i + FILTERS_PER_SUBSCRIBE]
            packet = mqtt5.SubscribePacket(subscriptions=[
                mqtt5.Subscription(topic_filter=s.topic_filter, qos=mqtt5.QoS(s.qos)) for s in chunk])
            suback = await _await_crt(client.subscribe(packet), timeout)
            bad += [
                (s.topic_filter, getattr(code, "name", str(code)))
                for s, code in zip(chunk, suback.reason_codes or [], strict=False)
                if int(code) >= 0x80
            ]
        if bad:
            quota = any(c in ("QUOTA_EXCEEDED", str(0x97)) for _t, c in bad)
            raise CloudError(
                "subscription refused: " + ", ".join(f"{t} ({c})" for t, c in bad),
                "AWS IoT Core allows 50 subscriptions per connection: close pages that follow devices"
                if quota else "the credentials' policy does not allow these topics",
            )

    async def _resubscribe(self) -> None:
        try:
            subs = [s for s in self._subs.values() if s.sent]
            if subs:
                await self._send_subscribe(subs)
        except Exception as exc:  # noqa: BLE001 - logged; the next reconnect resubscribes
            log.warning("resubscribe failed: %s", exc)

    def _online(self) -> bool:
        return self._client is not None and self._state.state == State.CONNECTED

    async def _catch_up(self) -> None:
        """After resuming a persistent session: the (un)subscribes asked for while offline."""
        subs = [self._subs[f] for f in self._sub_later if f in self._subs and self._subs[f].sent]
        gone = [f for f in self._unsub_later if not (f in self._subs and self._subs[f].sent)]
        self._sub_later.clear()
        self._unsub_later.clear()
        if subs:
            try:
                await self._send_subscribe(subs)
            except Exception as exc:  # noqa: BLE001 - logged; the next reconnect resubscribes
                log.warning("subscribing %s failed: %s", [s.topic_filter for s in subs], exc)
        for f in gone:
            await self._unsubscribe(f)

    async def _unsubscribe(self, topic_filter: str) -> None:
        """UNSUBSCRIBE now when connected; while offline it is left for the next connection
        (a resumed session still holds the filter), so nothing waits on a broker that is gone."""
        from awscrt import mqtt5

        client = self._client
        if client is None:
            return
        if not self._online():
            self._unsub_later.add(topic_filter)
            return
        try:
            fut = client.unsubscribe(mqtt5.UnsubscribePacket(topic_filters=[topic_filter]))
            await _await_crt(fut, 10)
        except Exception as exc:  # noqa: BLE001 - retried on the next connection
            self._unsub_later.add(topic_filter)
            log.debug("unsubscribe %s: %s", topic_filter, exc)

    async def publish(self, topic: str, payload: bytes | str | dict | list | None, *, qos: int = 1,
                      retain: bool = False, timeout: float = 15.0) -> None:
        """Publish and, for QoS1, wait for the broker's PUBACK.

        Raises:
            CloudError: not connected long enough, refused (e.g. not authorized), or timed out.
        """
        from awscrt import mqtt5

        client = self._client
        if client is None:
            raise CloudError("not connected", "start the connection first")
        packet = mqtt5.PublishPacket(topic=topic, payload=_payload_bytes(payload), qos=mqtt5.QoS(qos), retain=retain)
        if self._publish_pace is None:
            from aiolimiter import AsyncLimiter

            # IoT Core drops a connection's publishes beyond 100 a second (not adjustable): stay
            # under it whatever the callers do (a tenth of a second's worth at a time, no burst)
            self._publish_pace = AsyncLimiter(PUBLISHES_PER_SECOND / 10, 0.1)
        await self._publish_pace.acquire()
        try:
            result = await _await_crt(client.publish(packet), timeout)
        except asyncio.TimeoutError as exc:
            raise CloudError(f"publish to {topic} was not acknowledged within {timeout:.0f} s",
                             "check the connection state") from exc
        except Exception as exc:
            raise CloudError(f"publish to {topic} failed: {_exc_name(exc)}", "check the connection state") from exc
        self.stats["published"] += 1
        puback = getattr(result, "puback", None)
        if puback is not None and int(puback.reason_code) >= 0x80:
            name = getattr(puback.reason_code, "name", str(puback.reason_code))
            raise CloudError(f"publish to {topic} refused: {name}", "the credentials' policy does not allow this topic")
