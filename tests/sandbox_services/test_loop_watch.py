"""The sandbox's event-loop stall watch names the blocking line and the stall's length; a busy but
responsive loop reports nothing; the env switch starts it only for a positive number."""

from __future__ import annotations

import asyncio
import io
import time

from fleetdesk.sandbox import loop_watch


def _hold_the_loop_for(seconds: float) -> None:
    """A synchronous stretch on the loop thread (the stimulus: the loop must not run meanwhile)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


async def _ticks(n: int) -> None:
    for _ in range(n):
        await asyncio.sleep(0.01)


def test_a_blocked_loop_is_reported_with_the_blocking_function_and_its_length():
    out = io.StringIO()

    async def main():
        watch = loop_watch.LoopWatch(0.2, out).start()
        await _ticks(3)
        _hold_the_loop_for(0.8)
        await _ticks(3)  # the heartbeat runs again: the stall's end is reported
        watch.stop()
        return watch

    watch = asyncio.run(main())
    text = out.getvalue()
    assert watch.stalls >= 1, text  # (a loaded machine may add a pause of its own)
    assert "event loop stalled" in text and "in _hold_the_loop_for" in text, text
    lengths = [float(line.split("blocked for ")[1].split()[0]) for line in text.splitlines() if "stall ended" in line]
    assert lengths and max(lengths) >= 0.8, text


def test_a_responsive_loop_reports_nothing():
    out = io.StringIO()

    async def main():
        watch = loop_watch.LoopWatch(3.0, out).start()
        await _ticks(20)
        watch.stop()
        return watch

    assert asyncio.run(main()).stalls == 0
    assert out.getvalue() == ""


def test_env_switch(monkeypatch, capsys):
    async def started():
        watch = loop_watch.from_env()
        if watch is not None:
            watch.stop()
        return watch

    monkeypatch.delenv(loop_watch.ENV, raising=False)
    assert asyncio.run(started()) is None
    monkeypatch.setenv(loop_watch.ENV, "0")
    assert asyncio.run(started()) is None
    monkeypatch.setenv(loop_watch.ENV, "soon")
    assert asyncio.run(started()) is None
    assert f"ignoring {loop_watch.ENV}='soon': not a number of seconds" in capsys.readouterr().err
    monkeypatch.setenv(loop_watch.ENV, "0.5")
    watch = asyncio.run(started())
    assert watch is not None and watch.threshold_s == 0.5
