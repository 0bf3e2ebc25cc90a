"""Telemetry history: batched inserts, duplicates, ranges, retention, export, loss report."""

from __future__ import annotations

import csv
import io
import json
import time

import pytest

from fleetdesk.store.telemetry import Sample, TelemetryError, TelemetryStore, parse_sample, parse_time

T0 = 1_790_000_000.0


def samples(thing, n, start=T0, step=10.0, seq0=0):
    return [Sample(thing, start + i * step, 20.0 + i % 5, 40.0 + i % 7, seq0 + i) for i in range(n)]


def test_insert_query_and_redelivery_is_ignored(tmp_path):
    store = TelemetryStore(tmp_path / "t.db", retention_days=None)
    assert store.insert_many(samples("a", 100) + samples("b", 50)) == 150
    assert store.insert_many(samples("a", 10)) == 0  # QoS1 redelivery: same rows
    assert store.count() == 150 and store.count("a") == 100
    got = store.query("a", since=T0 + 100, until=T0 + 190)
    assert [s.seq for s in got] == list(range(10, 20))
    ts, temp, hum = store.arrays("a", since=T0 + 100, until=T0 + 190)
    assert len(ts) == 10 and ts[0] == T0 + 100 and temp.dtype.name == "float32"
    store.close()
    # survives reopening (a different process would see the same)
    again = TelemetryStore(tmp_path / "t.db", retention_days=None)
    assert again.count("b") == 50 and again.things() == ["a", "b"]
    assert again.latest()["a"].seq == 99


def test_seq_report_finds_missing_messages(tmp_path):
    store = TelemetryStore(tmp_path / "t.db", retention_days=None)
    rows = samples("a", 20)
    del rows[5:8]
    store.insert_many(rows + samples("b", 20))
    rep = store.seq_report()
    assert rep["a"] == {"count": 17, "min_seq": 0, "max_seq": 19, "missing": 3}
    assert rep["b"]["missing"] == 0


def test_retention_prunes_old_samples(tmp_path):
    store = TelemetryStore(tmp_path / "t.db", retention_days=1)
    now = time.time()
    store.insert_many(samples("a", 5, start=now - 3 * 86400) + samples("a", 5, start=now - 60, seq0=100))
    # inserting prunes now and then (here: the first insert)
    assert [s.seq for s in store.query("a")] == [100, 101, 102, 103, 104]
    assert store.prune(now + 86400 - 35) == 3  # nearly a day later, the three oldest are due


def test_export_csv_and_json(tmp_path):
    store = TelemetryStore(tmp_path / "t.db", retention_days=None)
    store.insert_many(samples("a", 3))
    buf = io.StringIO()
    assert store.export("a", None, None, "csv", buf) == 3
    rows = list(csv.DictReader(io.StringIO(buf.getvalue())))
    assert rows[0]["thing"] == "a" and float(rows[2]["temperature"]) == 22.0
    assert rows[0]["time_utc"].endswith("Z")
    buf = io.StringIO()
    store.export("a", T0 + 5, None, "json", buf)
    doc = json.loads(buf.getvalue())
    assert [d["seq"] for d in doc] == [1, 2]
    with pytest.raises(TelemetryError, match="unknown export format"):
        store.export("a", None, None, "xml", io.StringIO())


def test_parse_sample_rules():
    s = parse_sample("t", b'{"temperature": 21.5, "humidity": 40, "ts": 1790000000123, "seq": 4}', received=T0)
    assert (s.temperature, s.humidity, s.seq) == (21.5, 40.0, 4) and s.ts == pytest.approx(1790000000.123)
    # device clock not set (MicroPython epoch 2000) -> receive time
    assert parse_sample("t", {"temperature": 1, "ts": 12345}, received=T0).ts == T0
    for bad in (b"not json", b"[1,2]", b'{"temperature": "hot"}', b'{"seq": 1}', b'{"temperature": 1, "seq": "x"}',
                b'{"temperature": NaN}'):
        with pytest.raises(TelemetryError):
            parse_sample("t", bad, received=T0)


def test_parse_time_forms():
    assert parse_time("2h", now=T0) == T0 - 7200
    assert parse_time("1790000000") == 1790000000.0
    assert parse_time("2026-11-23T10:00:00Z") == parse_time("2026-11-23T10:00:00+00:00")
    with pytest.raises(TelemetryError, match="cannot read the time"):
        parse_time("yesterday-ish")


def test_insert_gaps_breaks_lines_where_the_device_was_offline():
    import numpy as np

    from fleetdesk.store.telemetry import insert_gaps

    ts = np.array([0, 10, 20, 30, 400, 410, 420], dtype=float)
    temp = np.array([1, 2, 3, 4, 5, 6, 7], dtype=np.float32)
    gts, gtemp = insert_gaps(ts, temp)
    assert len(gts) == 8 and np.isnan(gtemp[4]) and gts[3] < gts[4] < gts[5]
    assert gtemp.dtype == np.float32 and list(gtemp[[0, 3, 5, 7]]) == [1, 4, 5, 7]
    same = insert_gaps(ts[:4], temp[:4])
    assert len(same[0]) == 4
