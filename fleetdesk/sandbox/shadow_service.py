"""Device Shadow service (classic + named) over MQTT, shared with the iot-data HTTP routes.

Topics (AWS): ``$aws/things/<thing>/shadow[/name/<name>]/get|update|delete`` in;
``.../<op>/accepted|rejected``, ``.../update/delta``, ``.../update/documents`` out. Every
reply echoes ``clientToken``; errors are ``{code, message, timestamp, clientToken}`` on
``/rejected``. A thing may have at most 10 requests in flight (more -> 429). Updates are
committed to SQLite before ``/accepted`` is published. Who may publish to a thing's
shadow topics is the broker's business (per-thing ACL); the service trusts the topic.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import re
import threading
from typing import TYPE_CHECKING, Any

from fleetdesk.sandbox.shadow_doc import (
    ShadowError,
    apply_delete,
    apply_update,
    error_reply,
    get_reply,
    token_from_raw,
)
from fleetdesk.sandbox.shadow_store import ShadowStore

if TYPE_CHECKING:
    from fleetdesk.sandbox.mqtt_link import MqttLink

log = logging.getLogger(__name__)

MAX_IN_FLIGHT = 10
SHADOW_NAME_RE = re.compile(r"^[a-zA-Z0-9:_-]{1,64}$")
THING_NAME_RE = re.compile(r"^[a-zA-Z0-9:_-]{1,128}$")
FILTERS = [
    "$aws/things/+/shadow/get",
    "$aws/things/+/shadow/update",
    "$aws/things/+/shadow/delete",
    "$aws/things/+/shadow/name/+/get",
    "$aws/things/+/shadow/name/+/update",
    "$aws/things/+/shadow/name/+/delete",
]


def shadow_topic(thing: str, name: str = "") -> str:
    """Base topic of a shadow."""
    return f"$aws/things/{thing}/shadow" + (f"/name/{name}" if name else "")


def parse_topic(topic: str) -> tuple[str, str, str] | None:
    """(thing, shadow name, op) from a request topic, or None."""
    parts = topic.split("/")
    if len(parts) == 5 and parts[:2] == ["$aws", "things"] and parts[3] == "shadow":
        return parts[2], "", parts[4]
    if len(parts) == 7 and parts[:2] == ["$aws", "things"] and parts[3:5] == ["shadow", "name"]:
        return parts[2], parts[5], parts[6]
    return None


class ShadowService:
    """The shadow engine + store + publisher.

    Args:
        store: where shadows live.
        publish: ``publish(topic, dict)``; called on the event loop thread.
        loop: the loop that owns ``publish`` (HTTP handlers in other threads hop onto it).
    """

    def __init__(self, store: ShadowStore, publish, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.store = store
        self._publish = publish
        self.loop = loop
        self.inflight: collections.Counter[str] = collections.Counter()
        self._queue: collections.deque = collections.deque()
        self._scheduled = False
        self._lock = threading.RLock()
        self.link: MqttLink | None = None

    # ---- publishing ---------------------------------------------------------------------
    def publish(self, topic: str, payload: dict) -> None:
        """Publish on the loop thread (hops there when called from a worker thread)."""
        loop = self.loop
        if loop is not None and loop.is_running():
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is not loop:
                loop.call_soon_threadsafe(self._publish, topic, payload)
                return
        self._publish(topic, payload)

    # ---- MQTT side ----------------------------------------------------------------------
    def on_message(self, topic: str, payload: bytes) -> None:
        """A request arrived on a shadow topic: queue it (429 past 10 in flight for the thing).

        Requests queue in arrival order and are drained in the next loop iteration, so all
        requests that arrive together (one socket read) are in flight together.
        """
        parsed = parse_topic(topic)
        if parsed is None:
            return
        thing, name, op = parsed
        if op not in ("get", "update", "delete"):
            return
        base = shadow_topic(thing, name)
        if name and not SHADOW_NAME_RE.match(name):
            self.publish(f"{base}/{op}/rejected",
                         error_reply(400, "Invalid shadow name", token_from_raw(payload)))
            return
        if self.inflight[thing] >= MAX_IN_FLIGHT:
            self.publish(f"{base}/{op}/rejected",
                         error_reply(429, "Too Many Requests", token_from_raw(payload)))
            return
        self.inflight[thing] += 1
        self._queue.append((thing, name, op, payload))
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._drain)

    def flush(self) -> None:
        """Process what the last socket read queued, now (the link calls this after each read)."""
        if self._queue:
            self._drain()

    def _drain(self, batch: int = 256) -> None:
        cork = getattr(self.link, "cork", None)
        with cork() if cork else contextlib.nullcontext():  # one write for all the replies
            self._drain_batch(batch)
        if self._queue:  # let other work run between batches
            asyncio.get_running_loop().call_soon(self._drain)
        else:
            self._scheduled = False

    def _drain_batch(self, batch: int) -> None:
        queue = self._queue
        for _ in range(batch):
            if not queue:
                break
            thing, name, op, payload = queue.popleft()
            try:
                self.handle(thing, name, op, payload)
            except Exception:  # never let one request kill the service
                log.exception("shadow %s/%s %s failed", thing, name, op)
                self.publish(f"{shadow_topic(thing, name)}/{op}/rejected",
                             error_reply(500, "Internal service failure", token_from_raw(payload)))
            finally:
                self.inflight[thing] -= 1
                if self.inflight[thing] <= 0:
                    del self.inflight[thing]

    def handle(self, thing: str, name: str, op: str, payload: bytes) -> None:
        """Process one MQTT request and publish its replies."""
        base = shadow_topic(thing, name)
        try:
            if op == "get":
                reply = get_reply(self.store.get(thing, name), payload)
                self.publish(f"{base}/get/accepted", reply)
            elif op == "update":
                self._update(thing, name, payload)
            elif op == "delete":
                self._delete(thing, name, payload)
        except ShadowError as exc:
            self.publish(f"{base}/{op}/rejected", error_reply(exc.code, exc.message, token_from_raw(payload)))

    # ---- shared operations (MQTT and HTTP) ---------------------------------------------
    def _update(self, thing: str, name: str, payload: bytes | dict) -> dict:
        base = shadow_topic(thing, name)
        with self._lock:
            result = apply_update(self.store.get(thing, name), payload)
            self.store.put(result.shadow)  # durable before anyone hears "accepted"
        self.publish(f"{base}/update/accepted", result.accepted)
        if result.delta is not None:
            self.publish(f"{base}/update/delta", result.delta)
        self.publish(f"{base}/update/documents", result.documents)
        return result.accepted

    def _delete(self, thing: str, name: str, payload: bytes | dict | None) -> dict:
        with self._lock:
            gone, reply = apply_delete(self.store.get(thing, name), payload)
            self.store.put(gone)
        self.publish(f"{shadow_topic(thing, name)}/delete/accepted", reply)
        return reply

    def get_document(self, thing: str, name: str = "") -> dict:
        """GetThingShadow. Raises ShadowError (404 when missing)."""
        return get_reply(self.store.get(thing, name))

    def update_document(self, thing: str, name: str, payload: bytes) -> dict:
        """UpdateThingShadow: same semantics and MQTT notifications as an MQTT update."""
        return self._update(thing, name, payload)

    def delete_document(self, thing: str, name: str = "") -> dict:
        """DeleteThingShadow."""
        return self._delete(thing, name, None)

    def list_named(self, thing: str) -> list[str]:
        """Names of a thing's named shadows."""
        return self.store.named(thing)


class _Running:
    def __init__(self, service: ShadowService, link) -> None:
        self.service = service
        self.link = link

    async def stop(self) -> None:
        await self.link.stop()
        self.service.store.close()


async def start(ctx: Any) -> _Running:
    """Start the shadow service in the sandbox (``ctx.extras["shadows"]`` = the service)."""
    from fleetdesk.sandbox.mqtt_link import MqttLink

    store = ShadowStore(ctx.state_dir / "shadows.db")
    link_box: dict[str, MqttLink] = {}
    service = ShadowService(store, lambda t, p: link_box["link"].publish(t, p), asyncio.get_running_loop())
    link = MqttLink(ctx.internal_mqtt, "shadow", FILTERS, service.on_message, on_read_done=service.flush)
    link_box["link"] = link
    service.link = link
    await link.start()
    ctx.extras["shadows"] = service
    return _Running(service, link)
