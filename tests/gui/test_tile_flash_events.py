"""A station tile shows what the esptool worker reports: the worker's typed events, read back
from the lines it writes, move the tile's stage text, progress bar, chip line and details."""

from __future__ import annotations

import io

import pytest

from fleetdesk.boards import worker
from fleetdesk.boards.controller import TileState
from fleetdesk.boards.events import BoardEvent, Fallback, Info, Log, Progress, Stage, board_event, from_line

pytestmark = pytest.mark.gui


def _feed(tile: TileState, *events) -> None:
    """The worker writes the events; the host reads the lines back; the pipeline maps them."""
    out = io.StringIO()
    w = worker._Events(out)
    for ev in events:
        w.emit(ev)
    for line in out.getvalue().splitlines():
        wev = from_line(line)
        assert wev is not None, line
        bev = board_event(wev)
        if bev is not None:
            tile.apply(bev)


def test_tile_shows_the_workers_stage_chip_progress_and_lines(qtbot):
    from fleetdesk_gui.widgets.port_tile import PortTile

    tile = PortTile("s1")
    qtbot.addWidget(tile)
    state = TileState("s1", "socket://127.0.0.1:5555", state="running")
    state.apply(BoardEvent(stage="detect", state="running", percent=0))
    tile.update_from(state)
    assert tile.result.text() == "Connecting…" and tile.chip.text() == "chip not read yet"

    _feed(state, Info({"chip": "ESP32", "mac": "24:6f:28:aa:bb:cc"}), Stage("writing"),
          Log("Writing at 0x00010000..."), Progress(bytes=3000, total=10000, percent=30))
    tile.update_from(state)
    assert tile.result.text() == "Writing…"
    assert tile.chip.text() == "ESP32  24:6f:28:aa:bb:cc"
    assert tile.progress.value() == 30 and tile.progress.format() == "Writing %p%"
    assert "Writing at 0x00010000..." in tile.details.text()

    _feed(state, Fallback(115200, "Connection reset"), Stage("verifying"),
          Progress(bytes=10000, total=10000, percent=100))
    tile.update_from(state)
    assert tile.result.text() == "Verifying…" and tile.progress.value() == 100
    assert tile.details.text().splitlines()[-1] == "fell back to 115200 baud"

    state.apply(BoardEvent(stage="online", waiting_s=42))  # the pipeline's own countdown
    tile.update_from(state)
    assert tile.result.text() == "Waiting for cloud… 42 s left"
