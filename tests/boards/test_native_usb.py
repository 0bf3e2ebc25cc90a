"""Native-USB chips (USB-Serial/JTAG, VID 303A) change port when reset into the bootloader:
the station follows the board to its new port and the slot (and its label) stays."""

from __future__ import annotations

import json
import time

import pytest
import serial

from fleetdesk.boards.controller import StationController
from fleetdesk.boards.identity import CloudTarget
from fleetdesk.boards.ports import list_ports
from fleetdesk.boards.station import StationSettings
from fleetdesk.store.production import ProductionDB

pytestmark = pytest.mark.timeout(240)


def _wait(cond, timeout=3.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


def test_native_usb_board_reenumerates_on_bootloader_sync(rig):
    import esptool

    (board,) = rig.add(1, register=True, native_usb=True)
    (info,) = [p for p in list_ports(False) if p.device == board.url]
    assert info.usb_id == "303A:1001"
    old_url, location = board.url, info.location
    with pytest.raises(serial.SerialException, match="disconnected"):  # the port vanishes under the first SYNC
        esptool.detect_chip(old_url, connect_attempts=1)
    assert _wait(lambda: board.url != old_url and board.state == "bootloader")
    (moved,) = [p for p in list_ports(False) if p.location == location]
    assert moved.device == board.url and moved.usb_id == "303A:1001"
    # already in the ROM on the new port: the next session connects, no second move
    with esptool.detect_chip(board.url, connect_attempts=1) as esp:
        assert bytes(esp.read_mac()) == board.spec.mac_bytes
    assert board.url == moved.device


def test_default_board_keeps_its_port(rig):
    import esptool

    (board,) = rig.add(1, register=True)
    url = board.url
    with esptool.detect_chip(url, connect_attempts=1) as esp:
        assert bytes(esp.read_mac()) == board.spec.mac_bytes
    assert board.url == url
    (info,) = [p for p in list_ports(False) if p.device == url]
    assert info.vid is None


@pytest.mark.slow
def test_station_follows_reenumeration_and_slot_keeps_its_label(rig, bundle_dir, tmp_path, sandbox):
    cloud = CloudTarget.from_sandbox(sandbox.state_dir)
    db = ProductionDB(tmp_path / "prod.sqlite3")
    ctl = StationController(StationSettings(bundle=str(bundle_dir), identity=True, online_timeout=90, boot_wait=0),
                            cloud=cloud, db=db)
    ctl.start_watching()
    try:
        (board,) = rig.add(1, register=True, native_usb=True)
        assert _wait(lambda: len(ctl.tiles) == 1)
        slot = next(iter(ctl.tiles))
        ctl.set_label(slot, "Jig S3 / 1")
        old_url = ctl.tiles[slot].port
        assert old_url == board.url
        assert ctl.start(slot)
        assert _wait(lambda: ctl.tiles[slot].state in ("PASS", "FAIL"), 200)
        tile = ctl.tiles[slot]
        res = tile.last_result
        assert tile.state == "PASS", (res.error, res.esptool_tail[-8:], res.console_tail[-5:])
        new_url = board.url
        assert new_url != old_url
        assert res.followed == f"followed re-enumeration: {old_url} -> {new_url}"
        assert res.followed in tile.message
        assert res.thing == "fd-" + board.spec.mac.replace(":", "") and cloud.connectivity(res.thing)["connected"]
        assert len(ctl.tiles) == 1 and tile.label == "Jig S3 / 1"
        assert _wait(lambda: tile.port == new_url and tile.present)
        steps = db.journal(res.run_id)
        moved = [s for s in steps if s["status"] == "reenumerated"]
        assert len(moved) == 1
        detail = moved[0]["detail"]
        detail = json.loads(detail) if isinstance(detail, str) else detail
        assert (detail["from"], detail["to"]) == (old_url, new_url)
    finally:
        ctl.close()
