"""The cloud CLI: argument handling and telemetry export (no network needed)."""

from __future__ import annotations

import csv
import io
import json
import time

from fleetdesk.cli import main
from fleetdesk.store.telemetry import Sample, TelemetryStore


def test_telemetry_export_csv_and_json(tmp_path, capsys):
    db = tmp_path / "t.db"
    now = time.time()
    with TelemetryStore(db, retention_days=None) as store:
        store.insert_many([Sample("dev-1", now - 7200 + i * 60, 20.0 + i, 45.0, i) for i in range(120)])
    assert main(["telemetry", "export", "dev-1", "--since", "30m", "--format", "csv", "--db", str(db)]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert 29 <= len(rows) <= 31 and rows[0]["thing"] == "dev-1"
    out = tmp_path / "x.json"
    assert main(["telemetry", "export", "dev-1", "--since", str(now - 7200), "--until", str(now - 7200 + 120),
                 "--format", "json", "--db", str(db), "-o", str(out)]) == 0
    assert [d["seq"] for d in json.loads(out.read_text())] == [0, 1, 2]


def test_bad_since_is_explained(tmp_path, capsys):
    assert main(["telemetry", "export", "x", "--since", "last tuesday", "--db", str(tmp_path / "t.db")]) == 1
    err = capsys.readouterr().err
    assert "cannot read the time 'last tuesday'" in err and "15m" in err


def test_sandbox_not_running_is_explained(capsys):
    assert main(["things", "list"]) == 1
    err = capsys.readouterr().err
    assert "sandbox is not running" in err and "fleetdesk sandbox up" in err


def test_bad_desired_json_names_the_position(capsys):
    assert main(["shadow", "update", "t1", "--desired", '{"on": tru}']) == 1
    assert "--desired is not valid JSON" in capsys.readouterr().err
