"""Telemetry ingest and RPC over a real mosquitto: store before ack, batching, no loss."""

from __future__ import annotations

import asyncio
import json

import pytest

from fleetdesk.cloud.connection import Connection
from fleetdesk.cloud.errors import RequestTimeout, RpcError
from fleetdesk.cloud.rpc import Rpc
from fleetdesk.cloud.telemetry import Telemetry
from fleetdesk.cloud.fleet_state import FleetState
from fleetdesk.store.telemetry import TelemetryStore

from .test_connection import app_settings, wait_for


@pytest.fixture
async def clients(broker):
    conns = []

    async def make(client_id, **kw):
        c = Connection(app_settings(broker, client_id=client_id, **kw))
        await c.start()
        await c.wait_connected(10)
        conns.append(c)
        return c

    yield make
    for c in conns:
        await c.stop()


async def test_ingest_stores_acks_and_updates_fleet(clients, tmp_path):
    app = await clients("app-ingest")
    dev = await clients("dev", clean_start=True)
    store = TelemetryStore(tmp_path / "t.db", retention_days=None)
    fleet = FleetState()
    tel = Telemetry(app, store, fleet)
    batches = []
    tel.add_listener(batches.append)
    await tel.start()
    n_things, n_msgs = 20, 25
    pubs = [dev.publish(f"dt/thing-{t}/env", {"temperature": 20 + t, "humidity": 50, "seq": s})
            for s in range(n_msgs) for t in range(n_things)]
    await dev.publish("dt/thing-0/env", b"garbage")  # counted, acked, not stored
    await asyncio.gather(*pubs)
    await wait_for(lambda: tel.stats["stored"] == n_things * n_msgs, 20)
    await tel.flushed()
    assert store.count() == n_things * n_msgs
    assert all(v["missing"] == 0 for v in store.seq_report().values())
    assert len(batches) < n_things * n_msgs  # batched, not one UI call per message
    assert fleet.things["thing-3"].temperature == 23 and fleet.things["thing-3"].seq == n_msgs - 1
    assert fleet.diagnostics["malformed_telemetry"] == 1 and tel.stats["malformed"] == 1
    await tel.stop()
    store.close()


async def test_rpc_roundtrip_error_and_timeout(clients):
    app = await clients("app-rpc", clean_start=True)
    dev = await clients("thing-9", clean_start=True)

    async def serve(msg):
        req = json.loads(msg.payload)
        if req["method"] == "Sys.GetInfo":
            reply = {"id": req["id"], "result": {"fw_version": "1.0", "arch": "esp32"}}
        elif req["method"] == "Silent":
            return
        else:
            reply = {"id": req["id"], "error": {"code": 404, "message": "No handler for " + req["method"]}}
        # a reply on another device's topic must not be taken
        await dev.publish("other/rpc/resp", reply)
        await dev.publish("thing-9/rpc/resp", reply)

    await dev.subscribe("thing-9/rpc", serve)
    rpc = Rpc(app, timeout=3)
    await rpc.start()
    assert await rpc.call("thing-9", "Sys.GetInfo") == {"fw_version": "1.0", "arch": "esp32"}
    with pytest.raises(RpcError, match="No handler for FS.Nope"):
        await rpc.call("thing-9", "FS.Nope")
    with pytest.raises(RequestTimeout, match="did not answer Silent"):
        await rpc.call("thing-9", "Silent", timeout=0.5)
    await rpc.stop()


async def test_no_telemetry_lost_across_broker_restart(broker, tmp_path):
    """QoS1 + persistent session + store-before-ack: a broker restart mid-stream loses nothing."""
    from fleetdesk.cloud.connection import State

    app = Connection(app_settings(broker, client_id="app-restart"))
    pub = Connection(app_settings(broker, client_id="dev-restart"))  # persistent too: its QoS1 queue survives
    store = TelemetryStore(tmp_path / "t.db", retention_days=None)
    tel = Telemetry(app, store, FleetState())
    states = []
    app.add_state_listener(lambda ev: states.append(ev.state))
    await tel.start()
    try:
        for c in (app, pub):
            await c.start()
            await c.wait_connected(10)
        n = 300

        async def publish_all():
            for seq in range(n):
                await pub.publish("dt/dev-restart/env", {"temperature": 20, "seq": seq}, timeout=30)
                await asyncio.sleep(0.005)  # a paced stream (not a wait): the broker restart lands mid-stream

        task = asyncio.ensure_future(publish_all())
        await wait_for(lambda: tel.stats["stored"] >= n // 3, 20)
        await asyncio.to_thread(broker.restart)
        await asyncio.wait_for(task, 60)
        await wait_for(lambda: store.count() >= n, 30)
        await tel.flushed()
        rep = store.seq_report()["dev-restart"]
        assert rep == {"count": n, "min_seq": 0, "max_seq": n - 1, "missing": 0}
        assert State.RECONNECTING in states and states[-1] == State.CONNECTED
    finally:
        await tel.stop()
        store.close()
        await app.stop()
        await pub.stop()
