"""Slots are physical places: labels follow the USB location across re-enumeration, unknown
USB devices are never probed, hot-plug is reported by the watcher (how fast: bench/hotplug.py)."""

from __future__ import annotations

import time

import pytest

from fleetdesk.boards.controller import StationController
from fleetdesk.boards.ports import PortInfo, PortWatcher, list_ports, may_probe, parse_usb_id
from fleetdesk.boards.station import StationSettings

pytestmark = pytest.mark.timeout(120)


def _wait(cond, timeout=3.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


def test_probe_allow_list():
    cp2102 = PortInfo("/dev/ttyUSB0", "usb", 0x10C4, 0xEA60, location="1-1.2")
    s3_native = PortInfo("/dev/ttyACM0", "usb", 0x303A, 0x1001, location="1-1.3")
    phone = PortInfo("/dev/ttyACM1", "usb", 0x04E8, 0x6860, location="1-1.4")
    uart = PortInfo("/dev/ttyS0", "serial")
    assert may_probe(cp2102) and may_probe(s3_native)
    assert not may_probe(phone) and not may_probe(uart)
    assert may_probe(phone, [parse_usb_id("04e8:6860")])
    with pytest.raises(ValueError, match="VID:PID"):
        parse_usb_id("phone")


def test_hotplug_is_reported_both_ways(rig):
    events = []
    watcher = PortWatcher(lambda a, r: events.append(([p.device for p in a], [p.device for p in r])),
                          interval=0.25).start()
    try:
        (board,) = rig.add(1, register=True)
        assert _wait(lambda: any(board.url in a for a, _ in events), 5), f"plug of {board.url} not reported: {events}"
        rig.call(board.unplug())
        assert _wait(lambda: any(board.url in r for _, r in events), 5), f"unplug of {board.url} not reported: {events}"
        assert [e for e in events if board.url in e[0]] and len([e for e in events if board.url in e[1]]) == 1
    finally:
        watcher.stop()


def test_label_follows_the_place_across_reenumeration(rig):
    from fleetdesk.virtual.board import VirtualBoard

    (board,) = rig.add(1, register=True)
    ctl = StationController(StationSettings(identity=False))
    ctl.start_watching()
    try:
        assert _wait(lambda: len(ctl.tiles) == 1)
        slot = next(iter(ctl.tiles))
        ctl.set_label(slot, "Jig A / 1")
        old_url = board.url
        rig.call(board.close())  # the hub re-enumerates: same place, the board comes back on a new port
        again = VirtualBoard(board.spec, board.state_dir, register=True)
        rig.call(again.start())
        rig.boards.append(again)
        assert again.url != old_url
        assert _wait(lambda: ctl.tiles[slot].port == again.url and ctl.tiles[slot].present)
        assert len(ctl.tiles) == 1 and ctl.tiles[slot].label == "Jig A / 1"
    finally:
        ctl.close()
    # labels are saved: a new controller (app restart) shows them again
    ctl2 = StationController(StationSettings(identity=False))
    assert ctl2.labels[slot] == "Jig A / 1"


def test_unknown_usb_device_is_listed_but_never_probed(rig):
    (board,) = rig.add(1, register=True)
    phone = PortInfo("/dev/ttyACM7", "usb", 0x04E8, 0x6860, description="Samsung phone", location="3-2")
    ctl = StationController(StationSettings(identity=False), lister=lambda: [*list_ports(False), phone])
    ctl.start_watching()
    try:
        assert _wait(lambda: len(ctl.tiles) == 2)
        tile = ctl.tiles[phone.slot_key]
        assert not tile.probe_allowed and "04E8:6860" in tile.message
        assert ctl.start(phone.slot_key) is False  # START refused: no sync bytes to a phone
        assert tile.state == "idle" and not ctl._threads
    finally:
        ctl.close()


def test_factory_mode_auto_starts_on_plug_in(rig, bundle_dir, tmp_path):
    from fleetdesk.store.production import ProductionDB

    ctl = StationController(StationSettings(bundle=str(bundle_dir), identity=False, wait_online=False, boot_wait=0),
                            db=ProductionDB(tmp_path / "p.db"))
    ctl.auto_start = True
    ctl.start_watching()
    try:
        (board,) = rig.add(1, register=True)  # plugged in: no button pressed
        assert _wait(lambda: any(t.state == "PASS" for t in ctl.tiles.values()), 90)
        (tile,) = ctl.tiles.values()
        assert tile.mac == board.spec.mac and tile.passed == 1
    finally:
        ctl.close()


def test_operator_allows_an_unknown_usb_id_and_it_is_remembered(rig, bundle_dir):
    """An ESP board behind an unusual bridge: refused until the operator allows its VID:PID; the
    choice is saved, so a new controller (an app restart) probes it at once."""
    (board,) = rig.add(1)
    odd = PortInfo(board.url, "usb", 0x1A86, 0x7522, description="CH340K clone", location="3-7")
    ctl = StationController(StationSettings(bundle=str(bundle_dir), identity=False, boot_wait=0),
                            lister=lambda: [odd])
    ctl.start_watching()
    try:
        assert _wait(lambda: odd.slot_key in ctl.tiles)
        assert not ctl.tiles[odd.slot_key].probe_allowed and ctl.start(odd.slot_key) is False
        assert ctl.allow_usb(odd.slot_key) == "1A86:7522"
        assert ctl.tiles[odd.slot_key].probe_allowed
        assert ctl.start(odd.slot_key)
        assert ctl.wait_idle(120)
        res = ctl.tiles[odd.slot_key].last_result
        assert res.result == "PASS", res.error
    finally:
        ctl.close()
    again = StationController(StationSettings(identity=False), lister=lambda: [odd])
    again.start_watching()
    try:
        assert _wait(lambda: odd.slot_key in again.tiles)
        assert again.tiles[odd.slot_key].probe_allowed and "1A86:7522" in again.settings.allowed_usb
    finally:
        again.close()
