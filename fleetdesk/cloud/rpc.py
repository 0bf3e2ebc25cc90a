"""Remote procedure calls to devices over MQTT (Mongoose-OS style, seed 002).

Request on ``<thing>/rpc``: ``{"id", "method", "args", "src"}``; the device answers on
``<thing>/rpc/resp`` with ``{"id", "result"}`` or ``{"id", "error"}``. Ids are unique per
app session; a reply without a waiting caller is ignored.

Example::

    rpc = Rpc(conn); await rpc.start()
    info = await rpc.call("thing-1", "Sys.GetInfo")
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
from typing import Any

from fleetdesk.cloud.connection import Connection, Message
from fleetdesk.cloud.errors import RequestTimeout, RpcError
from fleetdesk.cloud.subscription import Subscription
from fleetdesk.cloud.topics import RPC_RESPONSE_FILTER, rpc_topic

KNOWN_METHODS = ("Sys.GetInfo", "Config.Get", "Config.Set", "FS.List", "Sys.Reboot")


class Rpc:
    """Calls methods on devices and waits for their replies.

    Args:
        conn: the app's :class:`Connection`.
        timeout: default seconds to wait for a reply.
    """

    def __init__(self, conn: Connection, *, timeout: float = 10.0) -> None:
        self.conn = conn
        self.timeout = timeout
        self._ids = itertools.count(int.from_bytes(os.urandom(3), "big") * 1000 + 1)
        self._pending: dict[int, tuple[str, asyncio.Future]] = {}
        self._replies = Subscription(conn, RPC_RESPONSE_FILTER, self._on_reply, qos=1)

    async def start(self) -> None:
        """Subscribe to every device's reply topic."""
        await self._replies.start()

    async def stop(self) -> None:
        await self._replies.stop()
        for _, fut in self._pending.values():
            fut.cancel()
        self._pending.clear()

    async def call(self, thing: str, method: str, args: Any = None, *, timeout: float | None = None) -> Any:
        """Call ``method`` on ``thing`` and return its ``result``.

        Raises:
            RpcError: the device answered with an error (e.g. unknown method).
            RequestTimeout: no answer in time (device offline or busy).
        """
        timeout = self.timeout if timeout is None else timeout
        rid = next(self._ids)
        fut = asyncio.get_running_loop().create_future()
        self._pending[rid] = (thing, fut)
        try:
            request = {"id": rid, "method": method, "args": {} if args is None else args,
                       "src": self.conn.settings.client_id}
            await self.conn.publish(rpc_topic(thing), request, qos=1)
            try:
                reply = await asyncio.wait_for(fut, timeout)
            except asyncio.TimeoutError as exc:
                raise RequestTimeout(
                    f"{thing} did not answer {method} within {timeout:.0f} s",
                    "is the device online? (fleet list shows presence)",
                ) from exc
        finally:
            self._pending.pop(rid, None)
        if "error" in reply and reply["error"] is not None:
            err = reply["error"]
            text = err.get("message", json.dumps(err)) if isinstance(err, dict) else str(err)
            raise RpcError(f"{thing}: {method} failed: {text}", error=err)
        return reply.get("result")

    def _on_reply(self, msg: Message) -> None:
        try:
            doc = json.loads(msg.payload)
            rid = doc.get("id") if isinstance(doc, dict) else None
        except (ValueError, UnicodeDecodeError):
            return
        entry = self._pending.get(rid) if isinstance(rid, int) else None
        if entry is None:
            return
        thing, fut = entry
        if msg.topic != f"{thing}/rpc/resp":
            return  # only the addressed device may answer
        if not fut.done():
            fut.set_result(doc)
