"""Broker restart during ingest: what a graceful restart and a SIGKILL of the sandbox's mosquitto
lose, side by side in one run (issue 9: "no telemetry lost (QoS1, persistent session, store
before ack)").

For each way of stopping mosquitto, a fresh private sandbox; the app's real ingest (cloud
Connection + Telemetry, persistent session, QoS1, store before ack); D devices (awsiotsdk
MQTT5, mTLS, QoS1, at AWS IoT's 100 publishes/s per connection) publishing numbered samples.
Mid-stream mosquitto is stopped; the sandbox restarts it; devices and app reconnect.
Two cases per signal:

* live: the app is connected and keeping up when the broker dies;
* backlog: the app is offline, a backlog is queued in its session, the broker dies ~0.5 s after
  the last PUBACK (before the next autosave can be relied on).

Lost = samples a device got a PUBACK for that never reached the app's store.

    .venv/bin/python bench/broker_restart.py [--devices 4] [--seconds 4]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import boto3  # noqa: E402

from fleetdesk.cloud.connection import Connection  # noqa: E402
from fleetdesk.cloud.identity import create_device_identity  # noqa: E402
from fleetdesk.cloud.session import app_settings  # noqa: E402
from fleetdesk.cloud.settings import ConnectionSettings  # noqa: E402
from fleetdesk.cloud.telemetry import Telemetry  # noqa: E402
from fleetdesk.config import Profile  # noqa: E402
from fleetdesk.cloud.fleet_state import FleetState  # noqa: E402
from fleetdesk.paths import write_private  # noqa: E402
from fleetdesk.sandbox.child import start_sandbox, stop_sandbox  # noqa: E402
from fleetdesk.store.telemetry import TelemetryStore  # noqa: E402


async def _until(pred, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


class Device:
    def __init__(self, conn: Connection, thing: str) -> None:
        self.conn, self.thing = conn, thing
        self.acked: set[int] = set()
        self.seq = 0
        self.running = True

    async def run(self, window: int = 10) -> None:
        async def one(seq: int) -> None:
            try:
                await self.conn.publish(f"dt/{self.thing}/env", {"temperature": 20, "humidity": 50, "seq": seq},
                                        timeout=60)
                self.acked.add(seq)
            except Exception:  # noqa: BLE001 - not acknowledged: not counted as sent
                pass

        while self.running:
            first, self.seq = self.seq, self.seq + window
            await asyncio.gather(*(one(s) for s in range(first, first + window)))


async def run_case(tmp: Path, sig: int, live: bool, n_devices: int, seconds: float) -> dict:
    proc, info = start_sandbox(tmp / "state")
    log_path = tmp / "state.log"
    devices: list[Device] = []
    store = TelemetryStore(tmp / "tel.db", retention_days=None)
    profile = Profile(state_dir=str(info.state_dir))
    app = tel = None
    try:
        iot = boto3.client("iot", **info.boto3_kwargs())

        async def new_app():
            conn = Connection(app_settings(profile))
            t = Telemetry(conn, store, FleetState())
            await t.start()
            await conn.start()
            await conn.wait_connected(15)
            probe = store.count("probe")
            await conn.publish("dt/probe/env", {"temperature": 0, "seq": probe})  # subscription in place
            await _until(lambda: store.count("probe") > probe, 15)
            return conn, t

        app, tel = await new_app()
        if not live:
            await tel.flushed()
            await app.stop()
            await tel.stop()
            app = tel = None
        for i in range(n_devices):
            thing = f"bench-{i}"
            ident = await asyncio.to_thread(create_device_identity, iot, thing)
            cert, key = tmp / f"{thing}.crt", tmp / f"{thing}.key"
            cert.write_text(ident.certificate_pem)
            write_private(key, ident.private_key_pem.encode())
            conn = Connection(ConnectionSettings(host=info.mqtt_host, port=info.mqtt_port, client_id=thing,
                                                 ca_file=info.ca_file, cert_file=str(cert), key_file=str(key),
                                                 clean_start=True, min_reconnect_ms=100, max_reconnect_ms=500))
            await conn.start()
            await conn.wait_connected(15)
            devices.append(Device(conn, thing))
        tasks = [asyncio.ensure_future(d.run()) for d in devices]
        await asyncio.sleep(seconds)
        if not live:  # stop publishing; kill ~0.5 s after the last PUBACK
            for d in devices:
                d.running = False
            await asyncio.gather(*tasks)
            await asyncio.sleep(0.5)
        before = log_path.read_text(errors="replace").count("mosquitto restarted")
        pid = int((Path(info.state_dir) / "broker" / "mosquitto.pid").read_text())
        t_kill = time.monotonic()
        os.kill(pid, sig)
        await _until(lambda: log_path.read_text(errors="replace").count("mosquitto restarted") > before, 30)
        restart_s = time.monotonic() - t_kill
        if live:
            await asyncio.sleep(seconds / 2)  # ingest goes on after the restart
            for d in devices:
                d.running = False
            await asyncio.gather(*tasks)
        else:
            app, tel = await new_app()
        acked = sum(len(d.acked) for d in devices)
        await _until(lambda: sum(store.count(d.thing) for d in devices) >= acked, 20)
        await tel.flushed()
        await asyncio.sleep(1.0)  # late redeliveries
        await tel.flushed()
        stored = {d.thing: {s.seq for s in store.query(d.thing)} for d in devices}
        lost = sum(len(d.acked - stored[d.thing]) for d in devices)
        return {"acked": acked, "stored": sum(len(v) for v in stored.values()), "lost": lost,
                "restart_s": restart_s}
    finally:
        for d in devices:
            d.running = False
            await d.conn.stop()
        if app is not None:
            await app.stop()
            await tel.stop()
        store.close()
        stop_sandbox(proc)


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=4.0)
    args = ap.parse_args()
    ok = True
    print(f"{args.devices} devices x 100 msg/s (awsiotsdk flow control), QoS1, app: persistent session, "
          "store before ack; mosquitto autosave_interval 1")
    print(f"{'case':<22} {'acked':>7} {'stored':>7} {'lost':>6} {'restart s':>10}  goal              result")
    for name, sig in (("SIGTERM", signal.SIGTERM), ("SIGKILL", signal.SIGKILL)):
        for live in (True, False):
            with tempfile.TemporaryDirectory(prefix="fd-bench-restart-") as tmp:
                r = await run_case(Path(tmp), sig, live, args.devices, args.seconds)
            label = f"{name} {'live' if live else 'backlog'}"
            if sig == signal.SIGTERM:
                goal, passed = "0 lost", r["lost"] == 0
                ok = ok and passed
                verdict = "PASS" if passed else "FAIL"
            else:
                goal, verdict = "measured (no WAL)", "info"
            pct = 100.0 * r["lost"] / r["acked"] if r["acked"] else 0.0
            print(f"{label:<22} {r['acked']:>7} {r['stored']:>7} {r['lost']:>6} {r['restart_s']:>10.2f}  "
                  f"{goal:<17} {verdict} ({pct:.1f}% lost)", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
