"""Issue 20 items 5, 6 and 9 on the Stations page: the station remembers its settings and
per-slot counters across restarts; firmware comes from the window (the built-in firmware,
a file dialog taking manifest.json/.bin/flasher_args.json, a bundle summary before START);
STOP is not a FAIL, an export reads as done, tiles keep their order, renaming is visible."""

from __future__ import annotations

import asyncio
import time

import pytest
from PySide6.QtCore import QSettings

from fleetdesk.boards.controller import StationController
from fleetdesk.boards.station import StationSettings
from fleetdesk.store.production import ProductionDB

pytestmark = [pytest.mark.gui, pytest.mark.timeout(240)]


def _page(qtbot, tmp_path, settings, **kw):
    from fleetdesk_gui.pages.stations import StationsPage

    ctl = StationController(StationSettings(identity=False, wait_online=False, boot_wait=0.5, **kw),
                            db=ProductionDB(tmp_path / "prod.sqlite3"))
    page = StationsPage(controller=ctl, settings=settings)
    qtbot.addWidget(page)
    page.show()
    return ctl, page


@pytest.mark.slow
def test_settings_and_counters_survive_a_restart(qtbot, rig, bundle_dir, tmp_path):
    settings = QSettings(str(tmp_path / "app.ini"), QSettings.IniFormat)
    (board,) = rig.add(1, register=True)
    ctl, page = _page(qtbot, tmp_path, settings)
    page.bundle.setText(str(bundle_dir / "manifest.json"))
    page.operator.setText("line 2 / Ana")
    page.baud.setCurrentText("230400")
    page.product.setText("fd-sensor")
    qtbot.waitUntil(lambda: len(page.tiles) == 1, timeout=5000)
    assert page.start_all() == 1
    qtbot.waitUntil(lambda: not ctl.busy, timeout=120_000)
    page.refresh()
    (slot,) = ctl.tiles
    assert ctl.tiles[slot].state == "PASS", ctl.tiles[slot].message
    page.close()

    ctl2, again = _page(qtbot, tmp_path, settings)  # the app started again
    assert again.bundle.text() == str(bundle_dir / "manifest.json")
    assert again.operator.text() == "line 2 / Ana" and again.baud.currentText() == "230400"
    assert again.product.text() == "fd-sensor" and not again.identity.isChecked()
    qtbot.waitUntil(lambda: slot in again.tiles, timeout=5000)
    again.refresh()
    assert again.tiles[slot].counters.text() == "✔ 1  ✘ 0"
    again.close()


def test_firmware_from_the_window(qtbot, qloop, tmp_path, bundle_dir):
    from fleetdesk_gui.widgets.station_form import FIRMWARE_FILTER

    ctl, page = _page(qtbot, tmp_path, None)
    assert page.bundle_info.text().startswith("No firmware chosen") and "Built-in firmware" in page.bundle_info.text()
    assert not page.lock() and page.status.text().startswith("no firmware bundle chosen")
    assert "Built-in firmware" in page.status.text()
    for accepted in ("manifest.json", "flasher_args.json", "*.bin"):
        assert accepted in FIRMWARE_FILTER
    page.form.builtin.click()

    async def built():
        deadline = time.monotonic() + 120
        while not page.bundle.text():
            assert time.monotonic() < deadline, f"no built-in firmware: {page.bundle_info.text()}"
            await asyncio.sleep(0.05)

    qloop.run_until_complete(built())
    assert page.status.text() == "", "the old 'no firmware bundle chosen' stayed after a bundle was chosen"
    assert page.bundle_info.text().startswith("esp32 · firmware "), page.bundle_info.text()
    assert "4 part(s): bootloader, partition-table, app, vfs" in page.bundle_info.text()
    assert "needs 4MB flash" in page.bundle_info.text()
    page.bundle.setText(str(tmp_path / "nothing-here"))
    page.form.describe_bundle()  # what the typing pause triggers
    assert page.bundle_info.text().startswith("No bundle at") and "b71c1c" in page.bundle_info.styleSheet()
    page.bundle.setText(str(bundle_dir / "merged.bin") if (bundle_dir / "merged.bin").exists()
                        else str(bundle_dir / "manifest.json"))
    qtbot.waitUntil(lambda: page.bundle_info.text().startswith("esp32 · "), timeout=3000)
    assert page.lock(), page.status.text()
    page.close()


@pytest.mark.slow
def test_stop_is_not_a_fail_export_is_green_order_is_stable(qtbot, rig, bundle_dir, tmp_path):
    first = rig.add(1, register=True, throttle=True)[0]  # throttled: there is time to press STOP
    ctl, page = _page(qtbot, tmp_path, None, bundle=str(bundle_dir))
    qtbot.waitUntil(lambda: len(page.tiles) == 1, timeout=5000)
    (slot,) = ctl.tiles
    assert page.tiles[slot].rename_btn.isVisibleTo(page.tiles[slot])
    assert page.start_all() == 1
    qtbot.waitUntil(lambda: ctl.tiles[slot].stage in ("write", "verify"), timeout=60_000)
    page.controller.stop(slot)
    qtbot.waitUntil(lambda: not ctl.busy, timeout=60_000)
    page.refresh()
    tile = ctl.tiles[slot]
    assert tile.state == "STOPPED" and tile.failed == 0, (tile.state, tile.message)
    assert page.tiles[slot].result.text() == "STOPPED ■" and "FAIL 0" in page.totals.text()
    from PySide6.QtWidgets import QFileDialog

    out = str(tmp_path / "b.zip")
    orig = QFileDialog.getSaveFileName
    QFileDialog.getSaveFileName = staticmethod(lambda *a, **k: (out, ""))  # the operator picks b.zip
    try:
        page._export(slot)
    finally:
        QFileDialog.getSaveFileName = orig
    assert page.status.text() == f"Exported {out}" and "1b5e20" in page.status.styleSheet()  # green, not red
    import zipfile

    assert "console.log" in zipfile.ZipFile(out).namelist()
    # the production record, from the page and from the CLI
    import csv
    import subprocess
    import sys

    page._export_records(str(tmp_path / "records.csv"))
    assert page.status.text().startswith("Exported 1 attempt(s) to") and "1b5e20" in page.status.styleSheet()
    rows = list(csv.DictReader(open(tmp_path / "records.csv")))
    assert [r["mac"] for r in rows] == [first.spec.mac]
    proc = subprocess.run([sys.executable, "-m", "fleetdesk", "boards", "records", "export", "-", "--db",
                           str(tmp_path / "prod.sqlite3")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert [r["mac"] for r in csv.DictReader(proc.stdout.splitlines())] == [first.spec.mac]
    before = [page.grid.itemAt(i).widget().slot for i in range(page.grid.count()) if page.grid.itemAt(i).widget()
              in page.tiles.values()]
    rig.add(2, register=True)
    qtbot.waitUntil(lambda: len(page.tiles) == 3, timeout=5000)
    page.refresh()
    order = [s for s in page._order[0]]
    assert order[0] == before[0] == slot, "plugging boards in moved the first tile"
    page.close()
