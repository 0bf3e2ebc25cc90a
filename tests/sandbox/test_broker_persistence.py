"""mosquitto persistence: the app's persistent session and its queued QoS1 telemetry survive a
broker restart (issue 9: "Broker killed and restarted during ingest ... no telemetry lost").

A private sandbox per test (its broker is killed). The app side is the real cloud layer
(Connection + Telemetry with store-before-ack) on the sandbox's internal login; the device
is an mTLS awsiotsdk MQTT5 client with its own certificate.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from pathlib import Path

import boto3
import pytest
from helpers_sandbox import connected_device

from fleetdesk.cloud.connection import Connection, State
from fleetdesk.cloud.errors import ConnectFailed
from fleetdesk.cloud.session import app_settings
from fleetdesk.cloud.telemetry import Telemetry
from fleetdesk.config import Profile
from fleetdesk.cloud.fleet_state import FleetState
from fleetdesk.sandbox.broker import PERSISTENCE_FILE
from fleetdesk.sandbox.child import start_sandbox, stop_sandbox
from fleetdesk.store.telemetry import TelemetryStore

pytestmark = pytest.mark.slow

# awsiotsdk's client keeps to AWS IoT's 100 publishes/s per connection: several devices at once.
# The app's session gets them back at IoT Core's 10 stored messages a second once it resumes
# (the sandbox paces them as AWS does), so the backlog is 20 s of that.
N_DEVICES = 4
PER_DEVICE = 50


async def wait_for(pred, timeout: float, what) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what() if callable(what) else what}")
        await asyncio.sleep(0.05)


@pytest.fixture
def private_sandbox(tmp_path):
    proc, info = start_sandbox(tmp_path / "state")
    try:
        yield info
    finally:
        stop_sandbox(proc)


def _broker_pid(info) -> int:
    return int((Path(info.state_dir) / "broker" / "mosquitto.pid").read_text())


async def _restart_broker(info, log_path, sig: int) -> None:
    """Signal mosquitto and wait until the sandbox has restarted it (a new pid, ports open)."""
    before = log_path.read_text(errors="replace").count("mosquitto restarted")
    pid = _broker_pid(info)
    os.kill(pid, sig)
    await wait_for(lambda: log_path.read_text(errors="replace").count("mosquitto restarted") > before, 30,
                   "the sandbox to restart mosquitto")
    assert _broker_pid(info) != pid


class App:
    """The app's ingest: a persistent-session QoS1 subscriber that stores before it acks."""

    def __init__(self, profile: Profile, store: TelemetryStore) -> None:
        settings = app_settings(profile)
        assert settings.clean_start is False and settings.session_expiry_sec > 0
        self.conn = Connection(settings)
        self.tel = Telemetry(self.conn, store, FleetState())
        self.states: list[State] = []
        self.conn.add_state_listener(lambda ev: self.states.append(ev.state))

    async def start(self, probe: str, backlog: int = 0) -> None:
        """Connect; then publish one sample for ``probe`` and wait until it is stored, which
        proves the dt/+/env subscription is in place (it is (re)sent after CONNACK). A resumed
        session's ``backlog`` of stored messages comes first, at IoT Core's 10 per second."""
        await self.tel.start()  # handler registered before connecting: a queued backlog is stored
        await self.conn.start()
        await self.conn.wait_connected(15)
        store = self.tel.store
        before = store.count(probe)
        await self.conn.publish(f"dt/{probe}/env", {"temperature": 0, "seq": before})
        await wait_for(lambda: store.count(probe) > before, 15 + backlog / 10, "the app's subscription")

    async def stop(self) -> None:
        """Disconnect without unsubscribing: the broker keeps the session and queues for it."""
        await self.tel.flushed()
        await self.conn.stop()
        await self.tel.stop()  # no client any more: only stops the writer thread


async def _publish_all(dev: Connection, thing: str, n: int, window: int = 50) -> None:
    for first in range(0, n, window):
        await asyncio.gather(*(dev.publish(f"dt/{thing}/env", {"temperature": 21.5, "humidity": 40, "seq": seq},
                                           timeout=30) for seq in range(first, min(n, first + window))))


def _db_saved_after(info, t: float) -> bool:
    try:
        return os.stat(Path(info.state_dir) / "broker" / PERSISTENCE_FILE).st_mtime > t
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("how", ["graceful", "sigkill"])
async def test_queued_telemetry_survives_broker_restart(private_sandbox, tmp_path, how):
    info = private_sandbox
    log_path = tmp_path / "state.log"
    profile = Profile(state_dir=str(info.state_dir))
    store = TelemetryStore(tmp_path / "tel.db", retention_days=None)
    iot = boto3.client("iot", **info.boto3_kwargs())
    tag = uuid.uuid4().hex[:8]
    things = [f"persist-{tag}-{i}" for i in range(N_DEVICES)]
    app = App(profile, store)
    await app.start(probe=f"probe-{tag}")  # subscribes dt/+/env at QoS1 in a persistent session
    await app.stop()
    devs: list[Connection] = []
    app2 = None
    try:
        idents = []
        for thing in things:
            dev, ident = await connected_device(info, iot, tmp_path, thing, initial_attempts=1)
            devs.append(dev)
            idents.append(ident)
        # every message PUBACKed by the broker while the app is offline: queued in its session
        await asyncio.gather(*(_publish_all(dev, thing, PER_DEVICE) for dev, thing in zip(devs, things)))
        acked_at = time.time()
        if how == "graceful":  # SIGTERM: mosquitto writes its database on the way out
            await _restart_broker(info, log_path, signal.SIGTERM)
        else:  # SIGKILL loses what arrived after the last autosave: wait for one that covers the queue
            await wait_for(lambda: _db_saved_after(info, acked_at), 20, "an autosave of the broker database")
            await _restart_broker(info, log_path, signal.SIGKILL)
        app2 = App(profile, store)
        total = PER_DEVICE * N_DEVICES
        await app2.start(probe=f"probe-{tag}", backlog=total)
        await wait_for(lambda: sum(store.count(t) for t in things) >= total, 30 + total / 10,
                       lambda: f"{total} samples stored (have {sum(store.count(t) for t in things)})")
        await app2.tel.flushed()
        report = store.seq_report()
        for thing in things:
            assert report[thing] == {"count": PER_DEVICE, "min_seq": 0, "max_seq": PER_DEVICE - 1, "missing": 0}

        # the rebuilt dynamic-security state and CRL still apply to the restarted broker
        dev, thing, ident = devs[0], things[0], idents[0]
        await dev.wait_connected(20)  # the device reconnected on its own (its certificate is ACTIVE)
        await dev.publish(f"dt/{thing}/env", {"temperature": 22, "seq": PER_DEVICE})
        await wait_for(lambda: store.count(thing) == PER_DEVICE + 1, 10, "a live sample after the restart")
        await asyncio.to_thread(iot.update_certificate, certificateId=ident.certificate_id, newStatus="REVOKED")
        await wait_for(lambda: dev.state.state != State.CONNECTED, 10, "the revoked device to be dropped")
        again = Connection(dev.settings)
        try:
            await again.start()
            with pytest.raises(ConnectFailed):  # refused at the TLS handshake (CRL)
                await again.wait_connected(15)
        finally:
            await again.stop()
    finally:
        for dev in devs:
            await dev.stop()
        if app2 is not None:
            await app2.stop()
        store.close()


def test_unreadable_session_database_is_moved_aside_not_deleted(tmp_path):
    state = tmp_path / "state"
    proc, _info = start_sandbox(state)
    stop_sandbox(proc)
    db = state / "broker" / PERSISTENCE_FILE
    garbage = b"not a mosquitto database " * 40
    db.write_bytes(garbage)
    proc, info = start_sandbox(state)  # still starts: mosquitto's own error would stop it
    try:
        kept = list((state / "broker").glob(PERSISTENCE_FILE + ".unreadable-*"))
        assert [p.read_bytes() for p in kept] == [garbage]
        log = (tmp_path / "state.log").read_text()
        assert "could not read its session database" in log and str(kept[0]) in log
        iot = boto3.client("iot", **info.boto3_kwargs())
        assert iot.describe_endpoint(endpointType="iot:Data-ATS")["endpointAddress"] == info.mqtt_host
    finally:
        stop_sandbox(proc)
