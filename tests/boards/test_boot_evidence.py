"""No PASS without boot evidence (issues 16 §4, 17 §3): a board whose firmware never started
FAILs, with or without identity, and says why; PASS needs the firmware's own boot line."""

from __future__ import annotations

import pytest

from fleetdesk.boards import bundle, fsimage
from fleetdesk.boards.station import Station, StationSettings
from fleetdesk.store.production import ProductionDB

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def _bundle_with_app(bundle_dir, out, app_source: bytes):
    """The real bundle with its fd/app module replaced by `app_source` (whatever form it shipped in)."""
    b = bundle.load_bundle(bundle_dir)
    shipped = [p for p in fsimage.read_image(b.vfs.data) if p.startswith("/fd/app.")]
    bundle.write_bundle(b.with_vfs_files({"/fd/app.py": app_source}, remove=tuple(shipped)), out)
    return out


def _run(tmp_path, bundle_path, board, **kw):
    settings = StationSettings(bundle=str(bundle_path), identity=False, wait_online=False, boot_wait=0.3,
                               boot_timeout=60, station="bench-1", **kw)
    return Station(settings, db=ProductionDB(tmp_path / "prod.sqlite3")).run_one(board.url)


def test_runtime_missing_fails_with_the_install_line(rig, bundle_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("FLEETDESK_MICROPYTHON", str(tmp_path / "no-such-micropython"))
    (board,) = rig.add(1)
    r = _run(tmp_path, bundle_dir, board)
    assert r.result == "FAIL", r.console_tail[-8:]
    assert "does not boot the new firmware" in r.error and "cannot start the firmware" in r.error
    assert "pip install 'fleetdesk[virtual]'" in r.error
    assert r.advice_code == "no-runtime" and "pip install 'fleetdesk[virtual]'" in r.advice
    rows = ProductionDB(tmp_path / "prod.sqlite3").attempts()
    assert [x["result"] for x in rows] == ["FAIL"]


def test_runtime_missing_fails_with_identity_too(rig, bundle_dir, tmp_path, monkeypatch, sandbox):
    from fleetdesk.boards.identity import CloudTarget

    monkeypatch.setenv("FLEETDESK_MICROPYTHON", str(tmp_path / "no-such-micropython"))
    (board,) = rig.add(1)
    cloud = CloudTarget.from_sandbox(sandbox.state_dir)
    settings = StationSettings(bundle=str(bundle_dir), identity=True, online_timeout=60, boot_timeout=60,
                               station="line-1")
    r = Station(settings, cloud=cloud, db=ProductionDB(tmp_path / "prod.sqlite3")).run_one(board.url)
    assert r.result == "FAIL" and "cannot start the firmware" in r.error, (r.error, r.console_tail[-8:])
    assert r.advice_code == "no-runtime"
    # the certificate minted for it does not stay ACTIVE on a board that never ran
    if r.certificate_id:
        status = cloud.iot.describe_certificate(certificateId=r.certificate_id)["certificateDescription"]["status"]
        assert status != "ACTIVE"


def test_an_app_that_raises_at_import_fails(rig, bundle_dir, tmp_path):
    bad = _bundle_with_app(bundle_dir, tmp_path / "raises", b"raise RuntimeError('broken at import')\n")
    (board,) = rig.add(1)
    r = _run(tmp_path, bad, board)
    assert r.result == "FAIL", r.console_tail[-8:]
    assert "does not boot the new firmware" in r.error and "broken at import" in r.error
    assert r.advice_code == "boot-failure"


def test_an_image_that_panics_fails(rig, bundle_dir, tmp_path):
    """The app reads address 0: on an ESP32 a LoadProhibited panic and a reboot, on a virtual
    board the interpreter's crash shown the same way, in a loop."""
    bad = _bundle_with_app(bundle_dir, tmp_path / "panics", b"import uctypes\nuctypes.bytearray_at(0, 4)[0]\n")
    (board,) = rig.add(1)
    r = _run(tmp_path, bad, board)
    assert r.result == "FAIL", r.console_tail[-8:]
    assert "Guru Meditation Error" in r.error and "LoadProhibited" in r.error
    assert r.advice_code == "boot-failure"


def test_no_boot_line_no_pass(rig, bundle_dir, tmp_path):
    """A firmware that runs but never prints its boot line (here: it idles silently) is not
    evidence of a booted firmware: FAIL when the boot timeout ends, quoting the console."""
    quiet = _bundle_with_app(bundle_dir, tmp_path / "silent",
                             b"import time\ndef main():\n    while True:\n        time.sleep(1)\n")
    (board,) = rig.add(1)
    settings = StationSettings(bundle=str(quiet), identity=False, wait_online=False, boot_wait=0, boot_timeout=3,
                               station="bench-1")
    r = Station(settings, db=ProductionDB(tmp_path / "prod.sqlite3")).run_one(board.url)
    assert r.result == "FAIL" and "never printed its boot line" in r.error, r.error
    good = _run(tmp_path, bundle_dir, board)
    assert good.result == "PASS", (good.error, good.console_tail[-8:])
