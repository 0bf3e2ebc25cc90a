"""Device shadows over MQTT for any thing (classic and named), with AWS semantics.

Requests go to ``$aws/things/<thing>/shadow[/name/<n>]/get|update|delete`` with a
``clientToken``; replies are matched by that token on ``/accepted`` or ``/rejected``.
``/update/delta`` and ``/update/documents`` of every thing are streamed to listeners and
async iterators, and fed to the fleet model.

Version conflicts: pass ``version=`` (the version the edit was made against). On 409 the
shadow is reloaded and :class:`ShadowConflict` carries the current document and which keys
differ; :meth:`Shadows.update` retries nothing and overwrites nothing behind the caller's back.
:meth:`Shadows.update_desired` (the editors' send) resends only while nobody changed the
desired keys being sent: a device reporting its readings moves the version all the time.
"""

from __future__ import annotations

import asyncio
import collections
import json
import uuid
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable

from fleetdesk.cloud.connection import Connection, Message
from fleetdesk.cloud.desired import conflicting
from fleetdesk.cloud.errors import RequestTimeout, ShadowConflict, ShadowRejected
from fleetdesk.cloud.fanout import Fanout
from fleetdesk.cloud.topics import parse_shadow_topic, shadow_filters, shadow_prefix
from fleetdesk.cloud.fleet_state import FleetState
from fleetdesk.shadow_limits import MAX_DEPTH, MAX_STATE_BYTES, state_depth

_MISSING = object()
# Resends of a desired change over versions moved only by others' reports (the device's readings):
# each resend races the next report, so one is not enough on a loaded machine or a busy device.
RESENDS_OVER_REPORTS = 8


@dataclass(frozen=True)
class ShadowEvent:
    """A shadow event seen on the broker.

    Attributes:
        thing: thing name.
        name: named shadow, or None for the classic one.
        kind: "delta", "documents", "accepted" (an update by anyone) or "deleted".
        doc: the payload as received (parsed JSON).
    """

    thing: str
    name: str | None
    kind: str
    doc: dict


def leaf_diff(a: Any, b: Any, prefix: str = "") -> list[str]:
    """Dotted paths of the leaves that differ between two JSON values (objects recursed)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for key in sorted(set(a) | set(b)):
            out += leaf_diff(a.get(key, _MISSING), b.get(key, _MISSING), f"{prefix}{key}.")
        return out
    return [] if a == b else [prefix.rstrip(".")]


class Shadows:
    """Get/update/delete any thing's shadow and watch deltas and documents.

    Args:
        conn: privileged :class:`Connection` (the app's).
        fleet: optional fleet model fed with documents and get replies.
        timeout: seconds to wait for a reply.
        data: a boto3 ``iot-data`` client: bulk updates (:meth:`update_many`) go over HTTPS
            (:mod:`fleetdesk.cloud.shadow_bulk`), not the app's MQTT connection.
    """

    def __init__(self, conn: Connection, fleet: FleetState | None = None, *, timeout: float = 10.0,
                 scoped: bool = False, max_followed: int = 16, data: Any = None) -> None:
        self.conn = conn
        self.data = data
        self.fleet = fleet
        self.timeout = timeout
        self.scoped = scoped
        self.max_followed = max_followed
        self._pending: dict[str, asyncio.Future] = {}
        self._events: Fanout[ShadowEvent] = Fanout("shadow")
        self._removers: list[Callable] = []
        self._followed: dict[str, list[Callable]] = {}  # scoped: thing -> its subscriptions (oldest first)
        self._following: dict[str, asyncio.Future] = {}
        self._busy: dict[str, int] = {}
        self._pinned: collections.Counter[str] = collections.Counter()  # thing -> pins (follow(pin=True) calls)
        self._room = asyncio.Condition()  # notified when a followed thing stops being busy or pinned

    async def start(self) -> None:
        """Subscribe to every shadow reply/event topic (``$aws`` topics named explicitly).

        ``scoped`` (a session on the fleet index): subscribe nothing up front; a thing's shadow
        topics are followed while a request to it is under way, while it is pinned
        (:meth:`follow`), and for the ``max_followed`` most recently used things, so the app's
        connection never carries every device's shadow traffic and stays under IoT Core's 50
        subscriptions per connection (2 per followed thing).
        """
        if self.scoped:
            return
        for f in shadow_filters():
            self._removers.append(await self.conn.subscribe(f, self._on_message, qos=1))

    async def follow(self, thing: str, *, pin: bool = False) -> None:
        """(scoped) Receive ``thing``'s shadow replies and events; ``pin`` keeps them until :meth:`unfollow`.

        Pins are counted: two watchers of one thing (a page that reopens the device it shows
        starts the new watch before the old one has stopped) each call :meth:`unfollow` once,
        and the thing stays followed until the last one has.
        """
        if pin:
            self._pinned[thing] += 1
        try:
            await self._subscribe_thing(thing)
        except BaseException:
            if pin:
                self._unpin(thing)
            raise
        await self._evict()

    async def _subscribe_thing(self, thing: str) -> None:
        if thing in self._followed:
            self._followed[thing] = self._followed.pop(thing)  # most recently used last
            return
        waiting = self._following.get(thing)
        if waiting is not None:
            await asyncio.shield(waiting)
            return
        if not await self._make_room():
            await self._subscribe_thing(thing)  # followed by another request meanwhile
            return
        fut = asyncio.get_running_loop().create_future()
        self._following[thing] = fut  # the place is taken at once (no await since the check)
        try:
            base = shadow_prefix(thing)
            removers = []
            for f in (f"{base}/+/+", f"{base}/name/+/+/+"):
                removers.append(await self.conn.subscribe(f, self._on_message, qos=1))
            self._followed[thing] = removers
            fut.set_result(None)
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # retrieved: a waiter re-raises it
            raise
        finally:
            self._following.pop(thing, None)

    async def _make_room(self) -> bool:
        """Before a new thing is followed: unsubscribe the least recently used idle one until
        fewer than ``max_followed`` are followed or being followed, so the subscriptions never
        exceed 2 x ``max_followed`` (IoT Core refuses the 51st of a connection, even for a
        moment during a bulk action); when every place is busy or pinned, wait for one.

        Returns:
            True when there is room (checked with no await before the caller takes it), False
            when the loop had to wait (the caller looks again: the thing may be followed now).

        Raises:
            RequestTimeout: no place freed within the request timeout (all pinned).
        """
        waited = False
        while len(self._followed) + len(self._following) >= self.max_followed:
            victim = next((t for t in self._followed if t not in self._pinned and not self._busy.get(t)), None)
            if victim is not None:
                for remove in self._followed.pop(victim):
                    await remove()
            else:
                async with self._room:
                    try:
                        await asyncio.wait_for(self._room.wait(), self.timeout)
                    except asyncio.TimeoutError as exc:
                        raise RequestTimeout(
                            f"all {self.max_followed} things the app's connection can follow at once are "
                            "busy or shown", "close a Device page or wait for the running action") from exc
            waited = True
        return not waited

    async def _freed(self) -> None:
        async with self._room:
            self._room.notify_all()

    def _unpin(self, thing: str) -> None:
        self._pinned[thing] -= 1
        if self._pinned[thing] <= 0:
            del self._pinned[thing]

    async def unfollow(self, thing: str) -> None:
        """(scoped) Drop one pin of ``thing`` (its subscriptions go, once unpinned, when others need the room)."""
        if thing in self._pinned:
            self._unpin(thing)
        await self._evict()
        await self._freed()

    async def _evict(self) -> None:
        while len(self._followed) > self.max_followed:
            victim = next((t for t in self._followed if t not in self._pinned and not self._busy.get(t)), None)
            if victim is None:
                return
            for remove in self._followed.pop(victim):
                await remove()

    async def stop(self) -> None:
        for remove in self._removers:
            await remove()
        self._removers.clear()
        for removers in list(self._followed.values()):
            for remove in removers:
                await remove()
        self._followed.clear()
        self._pinned.clear()
        for fut in self._pending.values():
            fut.cancel()
        self._pending.clear()

    # ---------------------------------------------------------------- requests
    async def _request(self, thing: str, name: str | None, op: str, body: dict) -> dict:
        if not self.scoped:
            return await self._request_now(thing, name, op, body)
        self._busy[thing] = self._busy.get(thing, 0) + 1
        try:
            await self.follow(thing)
            return await self._request_now(thing, name, op, body)
        finally:
            self._busy[thing] -= 1
            if not self._busy[thing]:
                del self._busy[thing]
            await self._evict()
            await self._freed()

    async def _request_now(self, thing: str, name: str | None, op: str, body: dict) -> dict:
        token = uuid.uuid4().hex
        body = {**body, "clientToken": token}
        fut = asyncio.get_running_loop().create_future()
        self._pending[token] = fut
        try:
            await self.conn.publish(f"{shadow_prefix(thing, name)}/{op}", body, qos=1)
            try:
                kind, doc = await asyncio.wait_for(fut, self.timeout)
            except asyncio.TimeoutError as exc:
                raise RequestTimeout(
                    f"no reply to shadow {op} of {_label(thing, name)} within {self.timeout:.0f} s",
                    "is the shadow service running and the connection up?",
                ) from exc
        finally:
            self._pending.pop(token, None)
        if kind == "rejected":
            code = int(doc.get("code", 0) or 0)
            raise ShadowRejected(
                f"shadow {op} of {_label(thing, name)} rejected: {code} {doc.get('message', '')}".strip(),
                _ADVICE.get(code), code=code, error=doc)
        doc.pop("clientToken", None)
        return doc

    async def get(self, thing: str, name: str | None = None) -> dict:
        """The full shadow document (state, metadata, version, timestamp).

        Raises:
            ShadowRejected: e.g. code 404 when the shadow does not exist.
            RequestTimeout: no reply.
        """
        doc = await self._request(thing, name, "get", {})
        if self.fleet is not None:
            self.fleet.apply_shadow(thing, doc, name)
        return doc

    async def update(self, thing: str, *, desired: Any = _MISSING, reported: Any = _MISSING,
                     name: str | None = None, version: int | None = None, base: dict | None = None) -> dict:
        """Update desired and/or reported (``None`` clears a section; a ``None`` leaf deletes a key).

        Args:
            thing: thing name.
            desired: the desired changes.
            reported: the reported changes.
            name: named shadow.
            version: the version this edit was made against (recommended from editors).
            base: the document the edit was made against; on a conflict ``changed`` is then the
                list of keys someone else changed since.

        Returns:
            The ``/update/accepted`` document.

        Raises:
            ShadowConflict: ``version`` is stale; carries the reloaded document.
            ShadowRejected: 400 (bad document), 413 (too large), 429 (too many requests)...
        """
        state: dict = {}
        if desired is not _MISSING:
            state["desired"] = desired
        if reported is not _MISSING:
            state["reported"] = reported
        if not state:
            raise ShadowRejected("nothing to update: give desired and/or reported", code=400)
        body: dict = {"state": state}
        if version is not None:
            body["version"] = int(version)
        try:
            return await self._request(thing, name, "update", body)
        except ShadowRejected as exc:
            if exc.code != 409:
                raise
            try:
                current = await self.get(thing, name)
            except ShadowRejected:
                current = {}
            cur_state = current.get("state", {}) if isinstance(current, dict) else {}
            if base is not None:
                changed = leaf_diff(base.get("state", {}), cur_state)
            else:
                changed = [p for p in leaf_diff(state, {k: cur_state.get(k, _MISSING) for k in state})]
            raise ShadowConflict(
                f"shadow of {_label(thing, name)} changed since version {version} "
                f"(now {current.get('version')}); your update was not applied",
                "review the reloaded shadow and apply your change again",
                error=exc.error, current=current, changed=changed) from exc

    async def update_desired(self, thing: str, desired: dict, *, name: str | None = None,
                             version: int | None = None, base: dict | None = None,
                             max_resends: int = RESENDS_OVER_REPORTS) -> tuple[dict, int]:
        """An editor's send: update ``desired`` against ``version``/``base``; on a 409 that no
        one's change to the keys being sent caused (the device only reported its readings, or
        others changed other keys), send again over the reloaded document.

        Each resend is made against the document the last 409 reloaded, and the device may
        report again before it arrives: so it resends up to ``max_resends`` times, never over a
        desired key someone else changed since ``base``.

        Returns:
            ``(the /update/accepted document, how many resends it took)``.

        Raises:
            ShadowConflict: a key being sent was changed by someone else since ``base``
                (``changed`` lists every key changed since ``base``), or the version still
                moved after ``max_resends`` resends.
        """
        resends = 0
        at_version, at_base = version, base
        while True:
            try:
                doc = await self.update(thing, desired=desired, name=name, version=at_version, base=at_base)
                return doc, resends
            except ShadowConflict as exc:
                current = exc.current if isinstance(exc.current, dict) else {}
                if base is not None and at_base is not base:  # what changed since the user's edit
                    exc.changed = leaf_diff(base.get("state", {}), current.get("state", {}))
                if (resends >= max_resends or not isinstance(current.get("version"), int)
                        or conflicting(exc.changed, desired)):
                    raise
                resends += 1
                at_version, at_base = current["version"], current

    async def update_many(self, things: list[str], *, desired: Any, concurrency: int = 8) -> dict[str, Any]:
        """Bulk action: the same desired change on many things (e.g. ``{"reboot": n}``), or a
        per-thing one (``desired`` a function of the thing name), within IoT Core's quotas:
        over HTTPS with ``data`` (:mod:`fleetdesk.cloud.shadow_bulk`), else over MQTT paced
        as that module paces a session that follows every shadow.

        Returns:
            ``{thing: accepted document | the CloudError raised}`` — one failure does not stop
            the others.
        """
        from fleetdesk.cloud import shadow_bulk

        if self.data is not None:
            return await shadow_bulk.update_desired_many(self.data, things, desired, concurrency=concurrency,
                                                         follows_every_shadow=not self.scoped)
        return await shadow_bulk.each_paced(
            things, shadow_bulk.pace(True), concurrency,
            lambda thing: self.update(thing, desired=desired(thing) if callable(desired) else desired))

    async def get_many(self, things: list[str], *, concurrency: int = 8) -> dict[str, Any]:
        """Many things' classic shadows (fed to the fleet model): over HTTPS with ``data``
        (:func:`fleetdesk.cloud.shadow_bulk.get_many`), else over MQTT paced as a bulk update is.

        Returns:
            ``{thing: document | the CloudError raised}`` (no shadow yet: ShadowRejected 404).
        """
        from fleetdesk.cloud import shadow_bulk

        if self.data is None:
            return await shadow_bulk.each_paced(things, shadow_bulk.pace(True), concurrency, self.get)
        results = await shadow_bulk.get_many(self.data, things, concurrency=concurrency)
        if self.fleet is not None:
            for thing, doc in results.items():
                if isinstance(doc, dict):
                    self.fleet.apply_shadow(thing, doc)
        return results

    async def delete(self, thing: str, name: str | None = None, version: int | None = None) -> dict:
        """Delete a shadow (404 if it does not exist)."""
        body = {"version": int(version)} if version is not None else {}
        doc = await self._request(thing, name, "delete", body)
        if self.fleet is not None and name is None:
            self.fleet.apply_shadow_deleted(thing)
        return doc

    # ---------------------------------------------------------------- events
    def add_listener(self, fn: Callable[[ShadowEvent], Any]) -> Callable[[], None]:
        """Call ``fn(event)`` on the loop for every delta/documents/accepted/deleted event."""
        return self._events.add_listener(fn)

    async def events(self, thing: str | None = None, kinds: tuple[str, ...] = ("delta", "documents"),
                     ) -> AsyncIterator[ShadowEvent]:
        """Async iterator of events of one thing (or all), of the given kinds."""
        wanted = set(kinds)
        async for ev in self._events.stream(accept=lambda ev: (thing is None or ev.thing == thing)
                                            and ev.kind in wanted):
            yield ev

    def _on_message(self, msg: Message) -> None:
        parsed = parse_shadow_topic(msg.topic)
        if parsed is None:
            return
        thing, name, op, suffix = parsed
        try:
            doc = json.loads(msg.payload)
            if not isinstance(doc, dict):
                raise ValueError("not an object")
        except (ValueError, UnicodeDecodeError) as exc:
            if self.fleet is not None:
                self.fleet._problem("malformed_shadow", thing, exc, msg.payload)
            return
        token = doc.get("clientToken")
        if suffix in ("accepted", "rejected") and token in self._pending:
            fut = self._pending[token]
            if not fut.done():
                fut.set_result((suffix, dict(doc)))
        kind = None
        if op == "update" and suffix in ("delta", "documents", "accepted"):
            kind = suffix
        elif op == "delete" and suffix == "accepted":
            kind = "deleted"
        if kind is None:
            return
        if self.fleet is not None and name is None:
            if kind == "documents":
                self.fleet.apply_shadow(thing, doc)
            elif kind == "deleted":
                self.fleet.apply_shadow_deleted(thing)
        self._events.emit(ShadowEvent(thing, name, kind, doc))


def parse_state_json(text: str, section: str = "desired") -> dict | None:
    """Validate editor text for ``state.<section>`` before anything is sent.

    Returns the parsed object (``None`` means "clear the section").

    Raises:
        ShadowRejected: code 400 with the line/column of a JSON error, a non-object, more than
            6 levels of nesting or more than 8 KB — the same limits AWS enforces.
    """
    import json as _json

    try:
        value = _json.loads(text)
    except ValueError as exc:
        raise ShadowRejected(
            f"{section} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}",  # type: ignore[attr-defined]
            "fix the JSON at that position", code=400,
            error={"line": exc.lineno, "column": exc.colno, "pos": exc.pos}) from exc  # type: ignore[attr-defined]
    if value is not None and not isinstance(value, dict):
        raise ShadowRejected(f"{section} must be a JSON object (or null to clear it)", code=400)
    if value is not None:
        if state_depth(value) > MAX_DEPTH:
            raise ShadowRejected(f"{section} is nested deeper than {MAX_DEPTH} levels", code=400)
        size = len(_json.dumps(value, separators=(",", ":")).encode())
        if size > MAX_STATE_BYTES:
            raise ShadowRejected(f"{section} is {size} bytes; a shadow state may hold 8 KB", code=413)
    return value


def _label(thing: str, name: str | None) -> str:
    return f"{thing} (shadow {name!r})" if name else thing


_ADVICE = {
    400: "the document is not valid shadow JSON (state.desired/reported objects)",
    401: "the app's credentials may not touch this shadow",
    403: "the app's credentials may not touch this shadow",
    404: "the shadow does not exist yet: update it to create it",
    409: "reload the shadow and apply the change again",
    413: "the shadow state is over 8 KB: remove keys",
    429: "too many requests in flight for this thing: retry in a moment",
    500: "the shadow service failed: retry",
}
