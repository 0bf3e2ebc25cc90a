"""Fanout: the one way state events, shadow events, telemetry batches and log records reach their consumers."""

from __future__ import annotations

import asyncio

from fleetdesk.cloud.fanout import Fanout


async def test_a_failing_listener_does_not_stop_the_others(caplog) -> None:
    events: Fanout[int] = Fanout("shadow")
    seen: list[int] = []

    def broken(ev: int) -> None:
        raise RuntimeError("page gone")

    events.add_listener(broken)
    remove = events.add_listener(seen.append)
    events.emit(1)
    remove()
    remove()  # twice is harmless
    events.emit(2)
    assert seen == [1]
    assert "shadow listener failed" in caplog.text


async def test_a_slow_stream_loses_its_oldest_events_and_says_so() -> None:
    drops: list[int] = []
    batches: Fanout[int] = Fanout("telemetry", on_drop=lambda: drops.append(1))
    stream = batches.stream(first=0, maxsize=2)
    assert await asyncio.wait_for(anext(stream), 5) == 0  # the stream is open from its first read
    for n in (1, 2, 3):  # the consumer is busy: 1 is dropped for 3
        batches.emit(n)
    assert [await anext(stream), await anext(stream)] == [2, 3]
    assert len(drops) == 1
    await stream.aclose()
    assert batches._streams == []


async def test_a_stream_starts_with_first_and_keeps_what_it_accepts() -> None:
    events: Fanout[str] = Fanout("state")
    stream = events.stream(first="idle", accept=lambda ev: ev != "noise")
    assert await asyncio.wait_for(anext(stream), 5) == "idle"
    for ev in ("noise", "connected"):
        events.emit(ev)
    assert await asyncio.wait_for(anext(stream), 5) == "connected"
    await stream.aclose()
