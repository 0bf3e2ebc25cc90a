"""Bridging an accepted client to the broker's loopback internal listener under a sandbox login.

Shared by the sandbox's two fronts (WSS with SigV4, :mod:`fleetdesk.sandbox.wss`; mTLS,
:mod:`fleetdesk.sandbox.mtls_front`): the client's CONNECT is rewritten to carry the login the
sandbox chose for it (:func:`fleetdesk.sandbox.wss.rewrite_connect`), then bytes flow both ways
until either side closes: unchanged, or through a ``gate`` (the mTLS front's
:class:`fleetdesk.sandbox.mqtt_quotas.ConnectionQuotas`) that may drop packets and answer them.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable, Protocol

log = logging.getLogger(__name__)
PACE_S = 0.02  # how often held messages are looked at while some wait


class Gate(Protocol):
    """What a bridge may put between the client and the broker (after the CONNECT)."""

    def from_device(self, data: bytes) -> tuple[bytes, bytes]:
        """(bytes for the broker, replies for the client); may raise an exception with ``reply``
        (bytes for the client) to end the connection."""
        ...

    def from_broker(self, data: bytes) -> tuple[bytes, bytes]:
        """(bytes for the client, replies for the broker)."""
        ...


async def bridge(internal: Any, login: tuple[str, str], recv: Callable[[], Awaitable[bytes | None]],
                 send: Callable[[bytes], Awaitable[None]], *, first: bytes = b"",
                 on_open: Callable[[asyncio.StreamWriter], None] | None = None,
                 gate: Gate | None = None) -> bool:
    """Run one bridged connection until either side ends.

    Args:
        internal: the broker's internal listener (``host``, ``port``).
        login: (username, password) put into the client's CONNECT.
        recv: the next bytes from the client (None or b"" at its end).
        send: bytes to the client.
        first: client bytes already read (the start of the CONNECT).
        on_open: called with the broker-side writer before the CONNECT is sent (to note its
            local address, which the broker's log names).
        gate: filters both directions after the CONNECT (None: bytes pass unchanged).

    Returns:
        False when the broker could not be reached, else True.
    """
    from fleetdesk.sandbox.mqtt_wire import MqttProtocolError
    from fleetdesk.sandbox.wss import rewrite_connect

    try:
        reader, writer = await asyncio.open_connection(internal.host, internal.port)
    except OSError as exc:
        log.warning("bridge: broker unreachable: %s", exc)
        return False
    if on_open is not None:
        on_open(writer)

    async def to_broker(data: bytes) -> None:
        if gate is not None:
            try:
                data, reply = gate.from_device(data)
            except Exception as exc:
                if not hasattr(exc, "reply"):
                    raise
                log.info("bridge: %s", exc)
                if exc.reply:
                    await send(exc.reply)
                raise EOFError from exc
            if reply:
                await send(reply)
        if data:
            writer.write(data)
            await writer.drain()

    async def upstream() -> None:
        pending, connected = first, False
        while True:
            if not connected and pending:
                out = rewrite_connect(pending, *login)
                if out is not None:
                    packet, used = out
                    writer.write(packet)
                    await to_broker(pending[used:])
                    pending, connected = b"", True
                    continue
            data = await recv()
            if not data:
                return
            if connected:
                await to_broker(data)
            else:
                pending += data

    async def downstream() -> None:
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                return
            if gate is not None:
                chunk, reply = gate.from_broker(chunk)
                if reply:
                    writer.write(reply)
                    await writer.drain()
            if chunk:
                await send(chunk)

    held = asyncio.Event()

    async def pacer() -> None:
        """Deliver what the gate holds back (a resumed session's stored messages) as it allows."""
        while True:
            await held.wait()
            held.clear()
            while True:
                out = gate.release()  # type: ignore[union-attr]
                if out:
                    await send(out)
                if not gate.holding:  # type: ignore[union-attr]
                    break
                await asyncio.sleep(PACE_S)

    tasks = [asyncio.create_task(upstream()), asyncio.create_task(downstream())]
    if gate is not None and hasattr(gate, "release"):
        gate.wake = held.set  # type: ignore[attr-defined]
        tasks.append(asyncio.create_task(pacer()))
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            try:
                await t
            except MqttProtocolError as exc:
                log.info("bridge: %s", exc)
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - closing either way
                pass
        writer.close()
    return True
