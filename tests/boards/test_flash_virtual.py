"""The real esptool (in worker processes) against virtual boards: probe, flash, refusals, faults."""

from __future__ import annotations

import threading

import pytest

from fleetdesk.boards.flasher import probe
from fleetdesk.boards.station import Station, StationSettings
from fleetdesk.store.production import ProductionDB

pytestmark = pytest.mark.timeout(180)


def _station(tmp_path, bundle_dir, **kw) -> Station:
    settings = StationSettings(bundle=str(bundle_dir), identity=False, wait_online=False, operator="ann",
                               station="bench-1", **kw)
    return Station(settings, db=ProductionDB(tmp_path / "prod.sqlite3"))


def test_probe_reads_chip_mac_and_flash(rig):
    (board,) = rig.add(1, chip="esp32c3", flash_mb=8)
    r = probe(board.url)
    assert r.ok, r.error
    assert r.info["chip"] == "ESP32-C3"
    assert r.info["mac"] == board.spec.mac
    assert r.info["flash_size"] == "8MB"
    assert r.info["revision"] == board.spec.revision


def test_probe_of_dead_port_says_what_to_do(rig):
    (board,) = rig.add(1)
    url = board.url
    rig.call(board.unplug())
    r = probe(url, timeout=60)
    assert not r.ok
    from fleetdesk.boards.advice import advise

    assert advise(r.error).code in ("port-gone", "failed-to-connect", "no-serial-data")


def test_parallel_flash_passes_and_records_rows(rig, bundle_dir, tmp_path):
    boards = rig.add(3)
    station = _station(tmp_path, bundle_dir)
    events: dict[str, list] = {b.url: [] for b in boards}
    results = station.run_many([b.url for b in boards], on_event=lambda port, ev: events[port].append(ev))
    assert [r.result for r in results] == ["PASS"] * 3, [r.error for r in results]
    for b, r in zip(boards, results):
        assert r.mac == b.spec.mac and r.chip == "ESP32"
        stages = [e.stage for e in events[b.url] if e.stage is not None]
        assert stages.index("write") < stages.index("verify") < stages.index("boot")
        pct = [e.percent for e in events[b.url] if e.percent is not None]
        assert pct[-1] == 100
        # what esptool wrote is on the board: the app image at 0x10000
        assert b.flash.read(0x10000, 64) == (bundle_dir / "app.bin").read_bytes()[:64]
    rows = station.db.attempts()
    assert sorted(r["mac"] for r in rows) == sorted(b.spec.mac for b in boards)
    assert {r["result"] for r in rows} == {"PASS"} and {r["bundle_sha256"] for r in rows} == {station.plan.sha256}
    assert all(r["operator"] == "ann" and r["station"] == "bench-1" for r in rows)
    # re-flash of a known MAC is flagged
    again = station.run_one(boards[0].url)
    assert again.result == "PASS" and again.reflash
    assert station.db.attempts(boards[0].spec.mac)[-1]["reflash"] == 1
    assert station.db.export_csv(tmp_path / "p.csv") == 4

    # one-click per-board export: journal, logs, bundle SHA-256, never keys
    import json
    import zipfile

    from fleetdesk.boards.export import export_attempt

    z = zipfile.ZipFile(export_attempt(station.db, again.attempt_id, tmp_path / "board.zip"))
    assert sorted(z.namelist()) == ["README.txt", "attempt.json", "console.log", "esptool.log", "journal.json"]
    assert json.loads(z.read("attempt.json"))["bundle_sha256"] == station.plan.sha256
    steps = [(j["step"], j["status"]) for j in json.loads(z.read("journal.json"))]
    assert steps[0] == ("detect", "begin") and ("verify", "done") in steps
    assert b"Hash of data verified" in z.read("esptool.log")


@pytest.mark.parametrize(
    "spec, needle",
    [
        ({"chip": "esp32s3"}, "bundle is for ESP32 but the board is ESP32-S3"),
        ({"secure_boot": True}, "secure boot is enabled"),
        ({"flash_encryption": True}, "flash encryption is enabled"),
        ({"flash_mb": 2}, "KB of flash"),
    ],
)
def test_refusals_happen_before_any_write(rig, bundle_dir, tmp_path, spec, needle):
    (board,) = rig.add(1, **spec)
    before = board.flash.read(0, board.flash.size)
    station = _station(tmp_path, bundle_dir)
    r = station.run_one(board.url)
    assert r.result == "FAIL" and needle in r.error, r.error
    assert r.advice  # one line telling the operator what to do
    assert board.flash.read(0, board.flash.size) == before  # not one byte written
    (row,) = station.db.attempts()
    assert row["result"] == "FAIL" and needle in row["error"]


def test_minimum_chip_revision_refused(rig, bundle_dir, tmp_path):
    from dataclasses import replace

    (board,) = rig.add(1, revision=100)
    station = _station(tmp_path, bundle_dir)
    station.plan = replace(station.plan, min_chip_revision=300)
    r = station.run_one(board.url)
    assert r.result == "FAIL" and "chip revision v1.0 is below" in r.error
    assert board.flash.read(0x10000, 16) == b"\xff" * 16


def _flash_in_thread(station, url, on_writing):
    out = {}

    def on_event(port, ev):
        if ev.stage == "write" and not out.get("fired"):
            out["fired"] = True
            on_writing()

    t = threading.Thread(target=lambda: out.update(result=station.run_one(url, on_event)))
    t.start()
    return t, out


def test_cancel_mid_write_leaves_the_port_usable(rig, bundle_dir, tmp_path):
    (board,) = rig.add(1, throttle=True)
    station = _station(tmp_path, bundle_dir, baud=115200)
    t, out = _flash_in_thread(station, board.url, station.cancel_all)
    t.join(120)
    assert out["result"].result == "FAIL" and "cancelled" in out["result"].error
    assert out["result"].advice_code == "cancelled"
    r2 = station.run_one(board.url)
    assert r2.result == "PASS", r2.error


def test_a_board_that_does_not_boot_fails_with_its_console_line(rig, bundle_dir, tmp_path):
    """Flashed and verified is not enough: a board that boot-loops after the write is a FAIL that
    quotes the console (here the app image has no ESP image magic byte)."""
    import shutil

    bad = tmp_path / "bad-bundle"
    shutil.copytree(bundle_dir, bad)
    app = bytearray((bad / "app.bin").read_bytes())
    app[0] = 0x00
    (bad / "app.bin").write_bytes(bytes(app))
    (board,) = rig.add(1)
    station = Station(StationSettings(bundle=str(bad), identity=False, boot_wait=2.5, station="bench-1"),
                      db=ProductionDB(tmp_path / "prod.sqlite3"))
    r = station.run_one(board.url)
    assert r.result == "FAIL" and "does not boot the new firmware" in r.error, (r.error, r.console_tail[-5:])
    assert "invalid magic byte" in r.error or "rst:0x" in r.error
    assert r.advice_code == "boot-failure" and "flash again" in r.advice
    good = Station(StationSettings(bundle=str(bundle_dir), identity=False, boot_wait=2.5),
                   db=ProductionDB(tmp_path / "prod.sqlite3")).run_one(board.url)
    assert good.result == "PASS", (good.error, good.console_tail[-5:])  # the same check lets a good boot pass
