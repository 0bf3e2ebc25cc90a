"""Bulk shadow requests (Set desired / Reboot on many things, loading many shadows) within IoT Core's quotas.

A bulk action goes through the Device Shadow REST API (``iot-data`` UpdateThingShadow over
HTTPS), not through the app's MQTT connection. Over MQTT each thing costs one publish in,
its ``/update/accepted`` (plus ``/documents`` and ``/delta``) out, and two subscriptions
while the reply is awaited on a session that does not follow every shadow: a 130-thing
action at 16 at a time went over IoT Core's 100 publishes per second per connection (out)
and its replies were dropped. Over HTTPS the updates count against the account's Device
Shadow API rate instead, and the reply is the HTTP answer.

What still reaches the app's connection is paced (:func:`pace`, an ``aiolimiter`` bucket):

* a session that subscribes every shadow's events (no fleet index) receives each update's
  ``/update/accepted``, ``/update/documents`` and ``/update/delta``: the updates are paced so
  those stay within :data:`OUT_BUDGET` of the 100 per second out (the rest is left to the
  readings and presence that arrive meanwhile);
* a session on the fleet index receives nothing for them: only the HTTPS rate
  (:data:`HTTPS_PER_SECOND`, far below the account's UpdateThingShadow quota) applies.

Loading many shadows (:func:`get_many`: the Fleet page without an index) goes the same way:
GetThingShadow over HTTPS, at :data:`HTTPS_PER_SECOND`, so the app's connection carries none of it.

Errors come back as :class:`ShadowRejected` with the HTTP status as ``code`` (400, 404, 409,
413, 429...), as the MQTT ``/rejected`` document's code would be.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Callable

from aiolimiter import AsyncLimiter

from fleetdesk.cloud.errors import ShadowRejected

# Device Shadow REST API requests per second the app makes in a bulk action (AWS's default
# per-account UpdateThingShadow quota is in the thousands; this leaves it to devices and others).
HTTPS_PER_SECOND = 100.0
# publishes per second out on the app's connection a bulk action may cause (of IoT Core's 100)
OUT_BUDGET = 60.0
# messages the app's connection receives per update when it follows every shadow
EVENTS_PER_UPDATE = 3
CONCURRENCY = 8


def updates_per_second(follows_every_shadow: bool) -> float:
    """How fast a bulk action may update shadows for a session of this kind."""
    return OUT_BUDGET / EVENTS_PER_UPDATE if follows_every_shadow else HTTPS_PER_SECOND


def pace(follows_every_shadow: bool) -> AsyncLimiter:
    """The limiter of one bulk action (one second of burst at most)."""
    rate = updates_per_second(follows_every_shadow)
    return AsyncLimiter(max(1.0, rate / 10), 0.1)  # a tenth of a second's worth at a time: no 1 s burst


def _https(thing: str, what: str, call: Callable[[], Any]) -> dict:
    """``call()`` (a boto3 ``iot-data`` shadow call, blocking) -> the answer's JSON document.

    Raises:
        ShadowRejected: the service refused it (``code``: the HTTP status, ``error``: AWS's code
            and message); also for a connection error (code 0).
    """
    from botocore.exceptions import BotoCoreError, ClientError

    from fleetdesk.cloud.shadows import _ADVICE

    try:
        raw = call()["payload"].read()
    except ClientError as exc:
        err = exc.response.get("Error", {})
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        raise ShadowRejected(f"shadow {what} of {thing} rejected: {status} {err.get('Code', '')}: "
                             f"{err.get('Message', '')}".strip(), _ADVICE.get(status), code=status,
                             error={"code": status, "message": err.get("Message", ""),
                                    "type": err.get("Code", "")}) from exc
    except BotoCoreError as exc:
        raise ShadowRejected(f"shadow {what} of {thing} failed: {exc}",
                             "check the profile's endpoint and the network", code=0) from exc
    doc = json.loads(raw or b"{}")
    doc.pop("clientToken", None)
    return doc


def update_over_https(data: Any, thing: str, document: dict) -> dict:
    """UpdateThingShadow (blocking: boto3 ``iot-data``); the accepted document (see :func:`_https`)."""
    return _https(thing, "update", lambda: data.update_thing_shadow(thingName=thing,
                                                                    payload=json.dumps(document).encode()))


def get_over_https(data: Any, thing: str) -> dict:
    """GetThingShadow (blocking: boto3 ``iot-data``); the document (404: no shadow yet)."""
    return _https(thing, "get", lambda: data.get_thing_shadow(thingName=thing))


async def each_paced(things: list[str], limiter: AsyncLimiter, concurrency: int, fn: Callable[[str], Any]) -> dict:
    """``{thing: await fn(thing) | the CloudError it raised}``, at most ``concurrency`` at a time and
    each start paced by ``limiter`` (one failure does not stop the others)."""
    from fleetdesk.errors import CloudError

    sem = asyncio.Semaphore(concurrency)
    results: dict[str, Any] = {}

    async def one(thing: str) -> None:
        async with sem:
            await limiter.acquire()
            try:
                results[thing] = await fn(thing)
            except CloudError as exc:
                results[thing] = exc

    await asyncio.gather(*(one(t) for t in things))
    return results


async def get_many(data: Any, things: list[str], *, concurrency: int = CONCURRENCY) -> dict[str, Any]:
    """Many things' classic shadows over HTTPS, paced at :data:`HTTPS_PER_SECOND`.

    Returns:
        ``{thing: document | the CloudError raised}`` (a missing shadow: ShadowRejected 404).
    """
    return await each_paced(things, pace(False), concurrency,
                       lambda thing: asyncio.to_thread(get_over_https, data, thing))


async def update_desired_many(data: Any, things: list[str], desired: dict | Callable[[str], dict], *,
                              follows_every_shadow: bool, concurrency: int = CONCURRENCY) -> dict[str, Any]:
    """The same (or a per-thing) desired change on many things over HTTPS, paced.

    Args:
        data: a boto3 ``iot-data`` client.
        things: thing names.
        desired: the desired changes, or a function of the thing name giving them.
        follows_every_shadow: the app's connection subscribes every shadow's events (pace the
            updates so their echoes stay within :data:`OUT_BUDGET`).
        concurrency: requests in flight at once.

    Returns:
        ``{thing: accepted document | the CloudError raised}`` — one failure does not stop the others.
    """
    def body(thing: str) -> dict:
        return {"state": {"desired": desired(thing) if callable(desired) else desired}}

    return await each_paced(things, pace(follows_every_shadow), concurrency,
                       lambda thing: asyncio.to_thread(update_over_https, data, thing, body(thing)))
