"""The flash events are typed on both sides of the worker process: what the worker writes is
what the host reads back, and a real flash reports its stages, chip and progress as such."""

from __future__ import annotations

import io

import pytest

from fleetdesk.boards import worker
from fleetdesk.boards.controller import TileState
from fleetdesk.boards.events import (
    BoardEvent,
    Fallback,
    Identity,
    Info,
    Log,
    Progress,
    Ready,
    Result,
    Stage,
    board_event,
    from_line,
    to_line,
)
from fleetdesk.boards.flasher import FlashJob
from fleetdesk.boards.images import load_plan

pytestmark = pytest.mark.timeout(180)

EVENTS = [
    Stage("writing"),
    Progress(bytes=4096, total=8192, percent=50),
    Log("Writing at 0x00010000 [====>     ]  50.0% 4096/8192 bytes..."),
    Info({"chip": "ESP32", "mac": "24:6f:28:aa:bb:cc", "flash_bytes": 4 << 20, "features": ["WiFi", "BT"]}),
    Ready({"chip": "ESP32-C3", "mac": "34:85:18:00:11:22"}),
    Identity(found=True, reason="", thing="fd-246f28aabbcc", certificate_id="ab" * 32, bytes_read=8192, reads=3,
             path="/tmp/board-identity.json", ms=41),
    Identity(found=False, reason="probe failed: OSError: gone", error=True),
    Fallback(115200, "Connection reset"),
    Result(ok=False, written=True, kind="serial", error="port gone", last_lines=["a", "b"], exception="OSError"),
]


@pytest.mark.parametrize("ev", EVENTS, ids=lambda ev: type(ev).__name__)
def test_every_worker_event_round_trips_through_one_line(ev):
    line = to_line(ev)
    assert "\n" not in line
    assert from_line(line) == ev


def test_the_wire_shape_is_the_workers_documented_protocol():
    assert from_line('{"event": "info", "chip": "ESP32", "mac": "24:6f:28:00:00:01"}') == \
        Info({"chip": "ESP32", "mac": "24:6f:28:00:00:01"})
    assert to_line(Stage("verifying")) == '{"event": "stage", "stage": "verifying"}'
    # a line that is not an event (stray output), an unknown event, a required field missing: skipped
    assert from_line("Serial port closed") is None
    assert from_line('{"event": "hello", "x": 1}') is None
    assert from_line('{"event": "progress", "bytes": 1}') is None
    # a field a newer worker adds is dropped, not a crash
    assert from_line('{"event": "log", "text": "hi", "colour": "red"}') == Log("hi")


def test_what_the_worker_writes_the_host_reads_back_in_order():
    out = io.StringIO()
    events = worker._Events(out)
    for ev in EVENTS:
        events.emit(ev)
    assert [from_line(line) for line in out.getvalue().splitlines()] == EVENTS


def test_worker_events_reach_the_tile_as_board_events():
    tile = TileState("s1", "socket://127.0.0.1:1")
    for ev in EVENTS:
        bev = board_event(ev)
        if bev is not None:
            tile.apply(bev)
    assert board_event(Stage("erasing")) == BoardEvent(stage="write")
    assert board_event(Result(ok=True)) is None and board_event(Ready({"chip": "ESP32"})) is None
    assert (tile.stage, tile.percent, tile.chip, tile.mac) == ("write", 50, "ESP32", "24:6f:28:aa:bb:cc")
    assert tile.details == [EVENTS[2].text, "fell back to 115200 baud"]


def test_a_real_flash_reports_typed_stages_chip_and_progress(rig, bundle_dir):
    (board,) = rig.add(1)
    seen: list = []
    result = FlashJob(board.url, load_plan(str(bundle_dir)), baud=460800, on_event=seen.append).run()
    assert result.ok, result.error
    stages = [ev.stage for ev in seen if isinstance(ev, Stage)]
    assert stages[0] == "connecting" and "writing" in stages and stages.index("writing") < stages.index("verifying")
    (info,) = [ev for ev in seen if isinstance(ev, Info)]
    assert (info.chip, info.mac) == ("ESP32", board.spec.mac)
    pct = [ev.percent for ev in seen if isinstance(ev, Progress)]
    assert pct == sorted(pct) and pct[-1] == 100
    assert not [ev for ev in seen if isinstance(ev, Result)]  # the result is the job's return value
    tile = TileState("s1", board.url)
    for ev in seen:
        bev = board_event(ev)
        if bev is not None:
            tile.apply(bev)
    assert (tile.chip, tile.mac, tile.percent, tile.stage) == ("ESP32", board.spec.mac, 100, "boot")
