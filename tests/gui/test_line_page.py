"""The Line page: every station of the line's PostgreSQL ledger, its PASS/FAIL by cause, CSV
export, and the ledger setting (a bad URL is refused with what to write)."""

from __future__ import annotations

import csv

import pytest

from fleetdesk.store.production import ProductionDB
from gui_testutil import until

pytestmark = pytest.mark.gui


def test_line_page_shows_every_station_and_exports(qtbot, qloop, pg_server, monkeypatch, tmp_path):
    import time

    from fleetdesk_gui.pages.line import LinePage

    url = pg_server.create_db("line")
    db = ProductionDB(url, key_file=tmp_path / "k")
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    for station, result, error in (("st-a", "PASS", None), ("st-a", "FAIL", "Failed to connect to ESP32: No serial "
                                    "data received."), ("st-b", "PASS", None)):
        db.finish(db.start_run(station=station), {"station": station, "result": result, "error": error, "time": now})
    db.close()
    monkeypatch.setenv("FLEETDESK_LEDGER", url)
    page = LinePage()
    qtbot.addWidget(page)
    page.show()
    qloop.run_until_complete(until(lambda: page.table.rowCount() == 2, timeout=15, what="both stations listed"))
    cells = {page.table.item(r, 0).text(): [page.table.item(r, c).text() for c in range(7)] for r in range(2)}
    assert cells["st-a"][2:4] == ["1", "1"] and cells["st-b"][2:4] == ["1", "0"]
    assert cells["st-a"][6] and "PASS 2, FAIL 1" in page.summary.text()
    assert page.ledger.text() == url
    assert page.export(str(tmp_path / "line.csv")) == 2
    assert [r["station"] for r in csv.DictReader(open(tmp_path / "line.csv"))] == ["st-a", "st-b"]

    page.ledger.setText("mysql://nope")
    page.save_ledger()
    assert "not a postgresql" in page.summary.text() and "postgresql://" in page.summary.text()
