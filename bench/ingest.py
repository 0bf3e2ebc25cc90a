"""Ingest bench: telemetry from 1,000 simulated devices, stored msg/s and loss (goal >= 10,000 msg/s, 0 lost).

Side by side in one run, on the same mosquitto and the same publisher load:

* floor: the app's own fleetdesk.cloud.Connection (awscrt MQTT5) with a handler that only counts
  messages (auto-ack, nothing stored): the receive path without the store;
* fleetdesk: the app's pipeline (fleetdesk.cloud.Telemetry: QoS1 with manual ack after the
  SQLite commit, persistent session, batches fed to the FleetState model).

The load: a separate publisher process sends ``dt/sim-NNNN/env`` JSON payloads
``{"temperature","humidity","ts","seq"}`` for DEVICES things, MSGS each, QoS1, as fast as
the broker accepts them. Loss is checked by sequence numbers in the stored history. A
``--restart`` run additionally kills and restarts the broker mid-ingest (persistent
broker storage) and checks that nothing is lost.

Usage: .venv/bin/python bench/ingest.py [--devices 1000] [--msgs 40] [--restart]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from env_publisher import start_publishers  # noqa: E402
from fleetdesk.sandbox.broker import broker_user, find_mosquitto  # noqa: E402
GOAL_RATE = 10_000.0



def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Mosquitto:
    def __init__(self, root: Path) -> None:
        self.root, self.port, self.proc = root, free_port(), None
        pw = root / "passwd"
        pw.write_text("")
        for user in ("bench", "app"):
            subprocess.run(["mosquitto_passwd", "-b", str(pw), user, user], check=True, capture_output=True)
        (root / "data").mkdir()
        (root / "m.conf").write_text("\n".join([
            f"user {broker_user() or 'root'}", "persistence true", f"persistence_location {root / 'data'}/",
            "autosave_interval 5", "max_queued_messages 0", "max_inflight_messages 0", "log_dest none",
            f"listener {self.port} 127.0.0.1", f"password_file {pw}", "allow_anonymous false", ""]))

    def start(self) -> None:
        self.proc = subprocess.Popen([find_mosquitto()[0], "-c", str(self.root / "m.conf")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise SystemExit("mosquitto did not start")

    def stop(self, kill: bool = False) -> None:
        if self.proc and self.proc.poll() is None:
            (self.proc.kill if kill else self.proc.terminate)()
            self.proc.wait(10)


RECEIVE_MAXIMUM = [1000]


def settings(port: int, client_id: str, clean: bool):
    from fleetdesk.cloud.settings import ConnectionSettings

    return ConnectionSettings(host="127.0.0.1", port=port, client_id=client_id, username="app", password="app",
                              tls=False, clean_start=clean, receive_maximum=RECEIVE_MAXIMUM[0], min_reconnect_ms=100,
                              max_reconnect_ms=1000, keep_alive_sec=30)


def go_and_wait(pubs: list[subprocess.Popen]) -> float:
    for p in pubs:
        p.stdin.write("go\n")
        p.stdin.flush()
    spans = []
    for p in pubs:
        parts = p.stdout.readline().split()
        p.wait(60)
        if len(parts) == 3:
            spans.append((float(parts[1]), float(parts[2])))
    return (max(e for _, e in spans) - min(s for s, _ in spans)) if spans else 0.0


async def run_phase(broker: Mosquitto, mode: str, args: argparse.Namespace, tmp: Path) -> dict:
    from fleetdesk.cloud.connection import Connection
    from fleetdesk.cloud.telemetry import Telemetry
    from fleetdesk.cloud.fleet_state import FleetState
    from fleetdesk.store.telemetry import TelemetryStore

    devices, msgs = args.devices, args.msgs
    total = devices * msgs
    client_id = f"bench-app-{mode}"
    pub_span = 0.0
    if args.backlog:
        # the publishers send everything while the app is offline (the broker queues it)
        prime = Connection(settings(broker.port, client_id, clean=False))
        await prime.start()
        await prime.wait_connected(15)
        await prime.subscribe("dt/+/env", lambda m: None, qos=1)
        await prime.stop()
        pub_span = await asyncio.to_thread(go_and_wait, start_publishers(broker.port, devices, msgs, args.publishers))
    conn = Connection(settings(broker.port, client_id, clean=False))
    store = fleet = tel = None
    counted = {"n": 0, "first": 0.0, "last": 0.0}
    states: list[str] = []
    conn.add_state_listener(lambda ev: states.append(ev.state.value))
    if mode == "floor":
        def count(msg) -> None:
            if not counted["first"]:
                counted["first"] = time.time()
            counted["n"] += 1
            counted["last"] = time.time()
        await conn.subscribe("dt/+/env", count, qos=1)
    else:
        store = TelemetryStore(tmp / f"telemetry-{time.time():.0f}.sqlite3", retention_days=None)
        fleet = FleetState()
        tel = Telemetry(conn, store, fleet)

        def on_batch(samples) -> None:
            if not counted["first"]:
                counted["first"] = min(s.received for s in samples)
            counted["last"] = time.time()
        tel.add_listener(on_batch)
        await tel.start()  # handlers registered before connecting: nothing slips past
    await conn.start()
    await conn.wait_connected(15)
    await asyncio.sleep(0.2)  # subscription in place
    cpu0 = time.process_time()
    pub_task = None
    if not args.backlog:
        pubs = await asyncio.to_thread(start_publishers, broker.port, devices, msgs, args.publishers)
        pub_task = asyncio.ensure_future(asyncio.to_thread(go_and_wait, pubs))
    done = lambda: counted["n"] >= total if mode == "floor" else tel.stats["stored"] >= total  # noqa: E731
    restarted = False
    deadline = time.time() + 300
    while not done() and time.time() < deadline:
        await asyncio.sleep(0.01)
        if args.restart and mode != "floor" and not restarted and tel.stats["stored"] >= total // 3:
            restarted = True
            await asyncio.to_thread(broker.stop, True)  # SIGKILL: unclean
            await asyncio.sleep(0.5)
            await asyncio.to_thread(broker.start)
    cpu = time.process_time() - cpu0
    if pub_task is not None:
        pub_span = await pub_task
    result = {"mode": mode, "received": counted["n"] if mode == "floor" else tel.stats["received"]}
    if tel is not None:
        await tel.flushed()
        rep = store.seq_report()
        result.update(stored=store.count(), missing=sum(v["missing"] for v in rep.values()),
                      things=len(rep), batches=tel.stats["batches"], duplicates=tel.stats["duplicates"],
                      fleet_things=len(fleet.things), states=states)
        await tel.stop()
        store.close()
    await conn.stop()
    n = result.get("stored", counted["n"])
    elapsed = (counted["last"] - counted["first"]) if counted["first"] else 0.0
    result["elapsed"] = elapsed
    result["rate"] = n / elapsed if elapsed > 0 else 0.0
    result["cpu_us"] = cpu / max(n, 1) * 1e6
    result["publish_rate"] = total / pub_span if pub_span else 0.0
    return result


async def pipeline_alone(devices: int, msgs: int, tmp: Path) -> float:
    """The domain part alone (parse, SQLite batch commit, ack, fleet model), fed in-process."""
    from fleetdesk.cloud.connection import Message
    from fleetdesk.cloud.telemetry import Telemetry
    from fleetdesk.cloud.fleet_state import FleetState
    from fleetdesk.store.telemetry import TelemetryStore

    store = TelemetryStore(tmp / "alone.sqlite3", retention_days=None)
    tel = Telemetry(None, store, FleetState())  # type: ignore[arg-type]
    acks = [0]
    payloads = [[json.dumps({"temperature": 20.5, "humidity": 40.0, "ts": time.time(), "seq": s}).encode()
                 for s in range(msgs)]]
    t0 = time.perf_counter()
    for s in range(msgs):
        now = time.time()
        for d in range(devices):
            tel._on_message(Message(f"dt/sim-{d:04d}/env", payloads[0][s], 1, False, now,
                                    lambda: acks.__setitem__(0, acks[0] + 1)))
        await asyncio.sleep(0)  # let the flush loop run, as the connection's drain would
    await tel.flushed()
    elapsed = time.perf_counter() - t0
    assert acks[0] == devices * msgs == store.count()
    tel._writer.shutdown()
    store.close()
    return devices * msgs / elapsed


async def amain(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="fd-ingest-") as tmp:
        broker = Mosquitto(Path(tmp))
        broker.start()
        try:
            floor = await run_phase(broker, "floor", args, Path(tmp))
            app = await run_phase(broker, "fleetdesk", args, Path(tmp))
        finally:
            broker.stop()
        alone = await pipeline_alone(args.devices, args.msgs, Path(tmp))
    total = args.devices * args.msgs
    how = "queued while the app was offline, then drained" if args.backlog else "live"
    print(f"load: {args.devices} devices x {args.msgs} messages = {total:,} QoS1 messages, {how}; "
          f"{args.publishers} publisher processes at {floor['publish_rate']:,.0f} / {app['publish_rate']:,.0f} msg/s")
    print(f"floor (fleetdesk Connection over awscrt MQTT5, count only, auto-ack): {floor['rate']:>8,.0f} msg/s received, "
          f"{floor['cpu_us']:.0f} us CPU/msg")
    print(f"fleetdesk (parse, SQLite commit, then ack, fleet model): {app['rate']:>8,.0f} msg/s stored, "
          f"{app['cpu_us']:.0f} us CPU/msg, {app['batches']} batches, {app['duplicates']} duplicates ignored")
    print(f"fleetdesk pipeline alone (same messages fed in-process, no MQTT): {alone:>8,.0f} msg/s stored")
    lost = total - app["stored"]
    print(f"loss: {lost} messages not stored, {app['missing']} missing by sequence number"
          + (f"; broker killed and restarted mid-run (states: {' > '.join(app['states'])})" if args.restart else ""))
    ok = app["rate"] >= GOAL_RATE and lost == 0 and app["missing"] == 0
    print(f"goal: >= {GOAL_RATE:,.0f} msg/s stored, 0 lost | figure: {app['rate']:,.0f} msg/s, {lost} lost | "
          f"ratio to floor: {app['rate'] / max(floor['rate'], 1):.2f} | ratio to goal: {app['rate'] / GOAL_RATE:.2f} | "
          f"{'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


async def simulate_mode(args: argparse.Namespace) -> int:
    """1,000 devices from `fleetdesk fleet simulate` on the real sandbox; floor and pipeline side by side."""
    from fleetdesk.cloud.connection import Connection
    from fleetdesk.cloud.session import app_settings
    from fleetdesk.cloud.telemetry import Telemetry
    from fleetdesk.config import Profile
    from fleetdesk.cloud.fleet_state import FleetState
    from fleetdesk.store.telemetry import TelemetryStore

    with tempfile.TemporaryDirectory(prefix="fd-ingest-sim-") as tmp:
        state = Path(tmp) / "sandbox"
        sbx = subprocess.Popen([sys.executable, "-m", "fleetdesk", "sandbox", "up", "--json", "--state-dir", str(state), "--port-base", "0"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT)
        sim = None
        try:
            json.loads(sbx.stdout.readline())
            profile = Profile(state_dir=str(state))
            floor_n = {"n": 0}
            floor = Connection(app_settings(profile, ephemeral=True))
            await floor.subscribe("dt/+/env", lambda m: floor_n.__setitem__("n", floor_n["n"] + 1), qos=1)
            app = Connection(app_settings(profile))
            store = TelemetryStore(Path(tmp) / "telemetry.sqlite3", retention_days=None)
            fleet = FleetState()
            tel = Telemetry(app, store, fleet)
            await tel.start()
            states: list[str] = []
            for c in (floor, app):
                c.add_state_listener(lambda ev, c=c: states.append(
                    f"{'floor' if c is floor else 'app'}:{ev.state.value}{'(' + ev.reason + ')' if ev.reason else ''}"))
                await c.start()
                await c.wait_connected(20)
            await asyncio.sleep(0.5)
            sim = subprocess.Popen(
                [sys.executable, "-m", "fleetdesk", "fleet", "simulate", "--count", str(args.devices), "--rate",
                 str(args.rate), "--state-dir", str(state), "--json", "--duration", str(args.duration + 600)],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT)
            # wait until every device is online, then measure a steady window
            stats: dict = {}
            t_wait = time.time()
            while time.time() - t_wait < 900:
                line = await asyncio.to_thread(sim.stdout.readline)
                if not line:
                    raise SystemExit("the simulator stopped")
                stats = json.loads(line)
                if stats.get("online", 0) >= args.devices:
                    break
            print(f"simulator: {stats.get('online')}/{args.devices} devices online after {time.time() - t_wait:.0f} s")
            s0, f0, st0, c0, t0 = stats["sent"], floor_n["n"], tel.stats["stored"], time.process_time(), time.time()
            while time.time() - t0 < args.duration:
                stats = json.loads(await asyncio.to_thread(sim.stdout.readline))
            sent, fl, stored = stats["sent"] - s0, floor_n["n"] - f0, tel.stats["stored"] - st0
            span, cpu = time.time() - t0, time.process_time() - c0
            sim.terminate()
            await asyncio.to_thread(sim.wait, 60)
            # let what is still in flight arrive at both subscribers before comparing
            last, quiet, waited = -1, 0, 0
            while quiet < 3 and waited < 30:
                await asyncio.sleep(1.0)
                waited += 1
                quiet = quiet + 1 if floor_n["n"] == last and tel.stats["received"] >= floor_n["n"] else 0
                last = floor_n["n"]
            await tel.flushed()
            total_floor, total_stored = floor_n["n"], store.count()
            rep = store.seq_report()
            missing = sum(v["missing"] for v in rep.values())
            await tel.stop()
            store.close()
            for c in (floor, app):
                await c.stop()
        finally:
            for p in (sim, sbx):
                if p is not None and p.poll() is None:
                    p.terminate()
                    try:
                        p.wait(60)
                    except subprocess.TimeoutExpired:
                        p.kill()
    rate = stored / span
    print("connection states: " + " > ".join(states))
    print(f"load: `fleetdesk fleet simulate` {args.devices} devices at {args.rate:g} msg/s each "
          f"(firmware under CPython, own certs, mTLS); steady window {span:.0f} s")
    print(f"devices sent:                               {sent / span:>8,.0f} msg/s")
    print(f"floor (fleetdesk Connection over awscrt MQTT5, count only): {fl / span:>8,.0f} msg/s received")
    print(f"fleetdesk (SQLite commit, then ack, fleet):  {rate:>8,.0f} msg/s stored "
          f"({cpu / max(stored, 1) * 1e6:.0f} us app CPU/msg)")
    lost = total_floor - total_stored
    print(f"loss: {lost} of {total_floor:,} messages seen by the floor not stored; {missing} missing by sequence "
          f"number over {len(rep)} devices")
    ok = rate >= GOAL_RATE and lost <= 0 and missing == 0
    print(f"goal: >= {GOAL_RATE:,.0f} msg/s stored, 0 lost | figure: {rate:,.0f} msg/s, {max(lost, 0)} lost | "
          f"ratio to floor: {stored / max(fl, 1):.2f} | ratio to goal: {rate / GOAL_RATE:.2f} | "
          f"{'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--msgs", type=int, default=40, help="messages per device")
    ap.add_argument("--restart", action="store_true", help="kill -9 and restart the broker mid-ingest")
    ap.add_argument("--publishers", type=int, default=2, help="publisher processes")
    ap.add_argument("--backlog", action="store_true", help="publish while the app is offline, then measure the drain")
    ap.add_argument("--simulate", action="store_true",
                    help="use the real sandbox and `fleetdesk fleet simulate` devices instead of a bare broker")
    ap.add_argument("--rate", type=float, default=10.0, help="--simulate: messages per second per device")
    ap.add_argument("--duration", type=float, default=20.0, help="--simulate: seconds measured")
    ap.add_argument("--receive-max", type=int, default=1000, help="the app's MQTT receive maximum")
    args = ap.parse_args()
    RECEIVE_MAXIMUM[0] = args.receive_max
    return asyncio.run(simulate_mode(args) if args.simulate else amain(args))


if __name__ == "__main__":
    sys.exit(main())
