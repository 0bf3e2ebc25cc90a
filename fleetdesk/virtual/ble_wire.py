"""The host end of a virtual peripheral's BLE link: JSON lines over local TCP.

The firmware's `bluetooth` shim (firmware/hal/bluetooth.py, whose header is the wire
spec) serves each GATT table on a TCP port. :class:`LinkClient` is the one client of that
protocol: the connect handshake, requests matched to replies by id, ``op: error`` replies
raised as ATT errors, and notifications. Both the bleak backend
(:mod:`fleetdesk.virtual.ble_link`) and the BlueZ relay (:mod:`fleetdesk.virtual.ble_bluez`)
use it; each keeps its own error type and reconnect rules.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from typing import Any


class LinkClient:
    """One connection (at a time) to a virtual peripheral's link port.

    Args:
        on_notify: called with (handle, data) for every notification the board sends.
        error: the exception type raised for an ATT error reply.
    """

    def __init__(self, on_notify: Callable[[int, bytes], None], error: type[Exception]) -> None:
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.rx: asyncio.Task[None] | None = None
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._seq = 0
        self._on_notify = on_notify
        self._error = error

    @property
    def is_open(self) -> bool:
        return self.writer is not None and not self.writer.is_closing()

    async def open(self, host: str, port: int, mtu: int, timeout: float) -> dict[str, Any]:
        """Connect and ask for the link with ``mtu``.

        Returns:
            The board's reply (``op`` "connected" with mtu, name, services; or an error),
            ``{}`` when the board closed the socket without one.

        Raises:
            OSError, asyncio.TimeoutError: no connection or no reply within ``timeout``.
            ValueError: the reply is not JSON.
        """
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        self.reader, self.writer = reader, writer
        writer.write((json.dumps({"op": "connect", "mtu": mtu}) + "\n").encode())
        line = await asyncio.wait_for(reader.readline(), timeout)
        return json.loads(line) if line else {}

    def start_receiving(self, on_end: Callable[[], Awaitable[None]]) -> None:
        """Read the board's messages in a task; ``on_end()`` is awaited when the link ends."""
        self.rx = asyncio.create_task(self._receive(on_end))

    async def _receive(self, on_end: Callable[[], Awaitable[None]]) -> None:
        assert self.reader is not None
        try:
            while line := await self.reader.readline():
                msg = json.loads(line)
                if msg.get("op") == "notify":
                    self._on_notify(msg["handle"], bytes.fromhex(msg["data"]))
                elif (fut := self._pending.pop(msg.get("id"), None)) is not None and not fut.done():
                    fut.set_result(msg)
        except (OSError, ValueError, asyncio.CancelledError):
            pass
        finally:
            await on_end()

    async def request(self, req: dict[str, Any], timeout: float, want_reply: bool = True) -> dict[str, Any]:
        """Send ``req`` (an ``id`` is added) and wait for its reply (``{}`` if ``want_reply`` is False).

        Raises:
            the ``error`` type: the board answered ``op: error`` (an ATT error code).
            asyncio.TimeoutError: no reply within ``timeout``.
        """
        assert self.writer is not None
        self._seq += 1
        req["id"] = self._seq
        fut: asyncio.Future[dict[str, Any]] | None = None
        if want_reply:
            fut = asyncio.get_running_loop().create_future()
            self._pending[self._seq] = fut
        self.writer.write((json.dumps(req) + "\n").encode())
        await self.writer.drain()
        if fut is None:
            return {}
        reply = await asyncio.wait_for(fut, timeout)
        if reply.get("op") == "error":
            raise self._error(f"ATT error 0x{int(reply.get('att', 0x0E)):02x}: {reply.get('error')}")
        return reply

    def fail_pending(self, exc: Exception) -> None:
        """Fail every request still waiting for a reply with ``exc``."""
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(exc)
        self._pending.clear()

    async def close(self) -> None:
        """Close the socket (the board sees a disconnect); a no-op when not open."""
        writer, self.writer = self.writer, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
