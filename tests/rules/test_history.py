"""History from the telemetry table: readings the rule stored (also while the app was closed)
come into the local store once, and a missing table says what to run."""

from __future__ import annotations

import json
import time

import pytest
from helpers_sandbox import poll

from fleetdesk.cloud import account_setup
from fleetdesk.cloud.history import HistoryUnavailable, fetch, sync
from fleetdesk.store.telemetry import TelemetryStore


def test_history_from_dynamodb_into_the_local_store(iot, data, dynamodb, tmp_path):
    with pytest.raises(HistoryUnavailable) as missing:
        fetch(dynamodb, "hist-dev", 0)
    assert "fleetdesk cloud setup" in missing.value.advice
    account_setup.apply(iot, dynamodb)
    t0 = time.time()
    for seq in range(5):
        data.publish(topic="dt/hist-dev/env", qos=1,
                     payload=json.dumps({"temperature": 20 + seq, "humidity": 50, "seq": seq, "ts": int(t0) + seq}))
    samples = poll(lambda: (lambda s: s if len(s) == 5 else None)(fetch(dynamodb, "hist-dev", t0 - 60)))
    assert [s.seq for s in sorted(samples, key=lambda s: s.seq)] == [0, 1, 2, 3, 4]
    assert sorted(s.ts for s in samples) == [int(t0) + i for i in range(5)]  # the device's own clock
    store = TelemetryStore(tmp_path / "t.sqlite3")
    assert sync(store, dynamodb, "hist-dev", t0 - 60) == 5
    assert sync(store, dynamodb, "hist-dev", t0 - 60) == 0  # already cached
    ts, temp, hum = store.arrays("hist-dev", t0 - 60)
    assert list(temp) == [20, 21, 22, 23, 24]
    assert fetch(dynamodb, "hist-dev", t0 + 3600) == []
