"""Live fleet on AWS's engines vs the old design, both through the sandbox's quota-enforcing front.

A fresh sandbox (quotas on) set up with ``fleetdesk cloud setup``'s code; N simulated devices
each publish a reading per second on ``dt/<thing>/env`` (the rule stores it in DynamoDB) and
report it in their shadow (the index follows), as the firmware does. The simulated devices
share one privileged MQTT connection (the sandbox's internal login: thousands of mTLS clients
do not fit on this machine next to the broker), so the bench measures the cloud side and the
app's side, not per-device connections.

The app's side logs in as the app does (WebSockets + SigV4 with the sandbox's keys, through the
front that applies IoT Core's per-connection quotas), so what AWS would throttle is what the
front counted for that client id (``mqtt_throttled`` in ``throttled.json``), not an estimate.
Side by side:
* old design: one connection with the app's former filters (``dt/+/env``, every shadow's replies
  and events, every device's logs, presence): what it was sent (delivered + throttled by the
  front), per second, against IoT Core's 100 publishes/s per connection (not adjustable);
* new design: a real CloudSession on the fleet index with the Device page open (that thing's
  telemetry, shadow and presence followed) and presence followed for the rows in view
  (``presence.FOLLOW_MAX`` things): messages/s it receives, its busiest second, what the front
  throttled, and a bulk desired change (``--bulk`` things, ``Shadows.update_many``) made while
  the fleet runs; the Fleet page's data comes from SearchIndex: time from a reading to the index
  returning it (sampled devices), and the last hour of the open device from DynamoDB (rows, time).

Presence churn (``--churn`` connect/disconnect events per second across the fleet; default 200,
e.g. 100,000 devices each reconnecting every 17 minutes) is published on AWS's presence topics,
so the cost of a fleet-wide presence subscription is in the old design's figure.

Usage:
    .venv/bin/python bench/fleet_live.py [--devices 2000] [--seconds 30] [--rate 1] [--churn 200] [--bulk 500]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fleetdesk.sandbox.child import start_sandbox, stop_sandbox  # noqa: E402

AWS_CONNECTION_CAP = 100  # publishes per second per connection, in and out (IoT Core quota)


def _login(state_dir: Path) -> tuple[int, str, str]:
    creds = json.loads((state_dir / "credentials.json").read_text())
    blocks = (state_dir / "broker" / "mosquitto.conf").read_text().split("\nlistener ")[1:]
    port = next(int(b.split()[0]) for b in blocks if "cafile" not in b and "protocol websockets" not in b)
    return port, creds["internal_username"], creds["internal_password"]


def _client(state_dir: Path, name: str):
    import paho.mqtt.client as paho

    port, user, password = _login(state_dir)
    c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"{name}-{random.randrange(1 << 30)}")
    c.username_pw_set(user, password)
    c.connect("127.0.0.1", port)
    c.loop_start()
    return c


class Counter:
    """Messages one subscriber receives, in all and per second (what a per-connection cap sees)."""

    def __init__(self) -> None:
        self.n = 0
        self.presence = 0
        self.per_second: dict[int, int] = {}
        self.lock = threading.Lock()

    def __call__(self, *args) -> None:  # paho (client, userdata, msg) or a Connection handler (msg)
        msg = args[-1]
        with self.lock:
            self.n += 1
            second = int(time.time())
            self.per_second[second] = self.per_second.get(second, 0) + 1
            if msg.topic.startswith("$aws/events/presence/"):
                self.presence += 1

    def add(self, second: int, n: int) -> None:
        """``n`` messages received in ``second`` (sampled from a connection's counters)."""
        with self.lock:
            self.n += n
            self.per_second[second] = self.per_second.get(second, 0) + n

    def over_cap(self, cap: int) -> tuple[int, int]:
        """(busiest second's count, messages beyond ``cap`` in their second: what AWS would throttle)."""
        with self.lock:
            counts = list(self.per_second.values())
        return (max(counts, default=0), sum(max(0, c - cap) for c in counts))


class AppLoop:
    """An asyncio loop in a thread for the app's side (the devices' publisher stays synchronous)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro, timeout: float = 120.0):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def submit(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--devices", type=int, default=2000)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--rate", type=float, default=1.0, help="readings per device per second")
    ap.add_argument("--samples", type=int, default=20, help="devices whose index latency is measured")
    ap.add_argument("--churn", type=float, default=200.0,
                    help="presence events (connects + disconnects) per second across the fleet")
    ap.add_argument("--bulk", type=int, default=500, help="things a bulk desired change targets mid-run (0: none)")
    args = ap.parse_args()

    import boto3

    from fleetdesk.cloud import account_setup
    from fleetdesk.cloud.fleet_index import FleetIndex, filter_query
    from fleetdesk.cloud.history import fetch

    from fleet_index import bulk_fill  # bench/fleet_index.py: things + shadows straight into the files

    base = Path(tempfile.mkdtemp(prefix="fleet-live-"))
    state = base / "state"
    proc, info = start_sandbox(state)
    stop_sandbox(proc)
    bulk_fill(state, args.devices)
    proc, info = start_sandbox(state)
    try:
        kw = info.boto3_kwargs()
        iot, ddb = boto3.client("iot", **kw), boto3.client("dynamodb", **kw)
        account_setup.apply(iot, ddb)
        names = [f"esp-{i:06d}" for i in range(args.devices)]
        from fleetdesk.cloud.topics import LOGS_FILTER, PRESENCE_FILTER, RPC_RESPONSE_FILTER, shadow_filters

        old, new = Counter(), Counter()
        open_thing = names[0]
        # what the app's connection subscribes: without an index (CloudSession before issue 18) ...
        old_filters = ["dt/+/env", LOGS_FILTER, PRESENCE_FILTER, RPC_RESPONSE_FILTER, *shadow_filters()]
        # ... and on the index: a real session, the Device page open on one thing (below)
        from fleetdesk.cloud.presence import FOLLOW_MAX

        from fleetdesk.cloud.connection import Connection
        from fleetdesk.cloud.session import CloudSession, app_settings
        from fleetdesk.config import Profile

        profile = Profile(name="bench-live", state_dir=str(state))
        app = AppLoop()
        old_id, new_id = "fleetdesk-app-bench-old", "fleetdesk-app-bench-new"
        old_conn = Connection(app_settings(profile, client_id=old_id, clean_start=True))

        async def start_old() -> None:
            await old_conn.start()
            await old_conn.wait_connected(30)
            for f in old_filters:
                await old_conn.subscribe(f, old, qos=0)

        app.run(start_old())
        session = CloudSession(profile, store=False, settings=app_settings(profile, client_id=new_id, clean_start=True))

        async def start_new() -> None:
            await session.start(use_index=True)
            await session.watch_telemetry(open_thing)  # the Device page
            await session.presence.follow_only(names[:FOLLOW_MAX])  # the Fleet page's rows in view

        app.run(start_new())
        new_subs = len(session.conn._subs)
        assert new_subs <= 50, "IoT Core allows 50 subscriptions per connection"
        pub = _client(state, "devices")
        time.sleep(1.0)  # subscriptions settle (a bench, not a test)

        sampled = random.sample(names, min(args.samples, len(names)))
        sent_at: dict[str, tuple[float, float]] = {}
        interval = 1.0 / args.rate
        t0 = time.time()
        seq = 0
        sent = 0
        churned = 0
        old_window = None
        bulk = None
        received = session.conn.stats["received"]
        while time.time() - t0 < args.seconds:
            tick = time.time()
            now = session.conn.stats["received"]
            new.add(int(tick), now - received)
            received = now
            if old_window is None and tick - t0 >= args.seconds / 2:
                # the old design's subscriber costs the machine thousands of msg/s: drop it for the
                # second half, where the index latency is measured
                app.run(old_conn.stop())
                old_window = tick - t0
            if bulk is None and args.bulk and tick - t0 >= args.seconds * 0.6:
                bulk_t0 = time.time()
                bulk = app.submit(session.shadows.update_many(names[:args.bulk], desired={"on": True}))
            for n in names:
                temp = round(random.uniform(15, 35), 2)
                pub.publish(f"dt/{n}/env", json.dumps({"temperature": temp, "humidity": 40, "seq": seq,
                                                       "ts": int(tick)}), qos=0)
                pub.publish(f"$aws/things/{n}/shadow/update",
                            json.dumps({"state": {"reported": {"temperature": temp}}}), qos=0)
                if n in sampled:
                    sent_at[n] = (tick, temp)
                sent += 1
            for _ in range(int(args.churn * interval)):  # devices dropping and coming back, anywhere in the fleet
                n, kind = random.choice(names), random.choice(("connected", "disconnected"))
                pub.publish(f"$aws/events/presence/{kind}/{n}",
                            json.dumps({"clientId": n, "timestamp": int(tick * 1000), "eventType": kind,
                                        **({"disconnectReason": "CONNECTION_LOST"} if kind == "disconnected" else {})}),
                            qos=0)
                churned += 1
            seq += 1
            time.sleep(max(0.0, interval - (time.time() - tick)))
        elapsed = time.time() - t0
        new.add(int(time.time()), session.conn.stats["received"] - received)
        bulk_ok, bulk_s = 0, 0.0
        if bulk is not None:
            results = bulk.result(300)
            bulk_s = time.time() - bulk_t0  # an upper bound: collected after the run
            bulk_ok = sum(1 for r in results.values() if not isinstance(r, Exception))
        new_reconnects = session.conn.stats["disconnects"]

        idx = FleetIndex(iot)
        lat = []
        for n in sampled:
            t_sent, temp = sent_at[n]
            deadline = time.time() + 30
            while time.time() < deadline:
                rows = idx.page(filter_query(n)).rows
                if rows and rows[0].temperature == temp:
                    lat.append(time.time() - t_sent)
                    break
                time.sleep(0.2)
        t = time.perf_counter()
        history = fetch(ddb, open_thing, time.time() - 3600)
        hist_s = time.perf_counter() - t
        tiles = idx.tiles()
    finally:
        if locals().get("session") is not None:
            app.run(session.stop())
        if locals().get("app") is not None:
            app.run(old_conn.stop())
            app.close()
        client = locals().get("pub")
        if client is not None:
            client.loop_stop()
            client.disconnect()
        stop_sandbox(proc)  # the sandbox saves its throttle counts as it stops
        status = json.loads((state / "throttled.json").read_text()) if (state / "throttled.json").exists() else {}
        shutil.rmtree(base, ignore_errors=True)
    mqtt_throttled = status.get("mqtt_throttled") or {}
    old_dropped = sum((mqtt_throttled.get(old_id) or {}).values())
    new_dropped = sum((mqtt_throttled.get(new_id) or {}).values())
    old_sent = old.n + (mqtt_throttled.get(old_id) or {}).get("PublishOutPerSecond", 0)
    old_rate, new_rate = old_sent / (old_window or elapsed), new.n / elapsed

    print(f"{args.devices} devices x {args.rate}/s for {elapsed:.0f} s: {sent} readings sent "
          f"(+ as many shadow updates), {churned} presence events")
    print(f"{'':52}{'old design':>14}{'new design':>14}")
    print(f"{'app connection is sent (msg/s)':52}{old_rate:>14.1f}{new_rate:>14.1f}")
    print(f"{'IoT Core cap per connection (msg/s)':52}{AWS_CONNECTION_CAP:>14}{AWS_CONNECTION_CAP:>14}")
    share = lambda r: max(0.0, (r - AWS_CONNECTION_CAP) / r) if r else 0.0  # noqa: E731
    print(f"{'share over the cap':52}{share(old_rate):>14.1%}{share(new_rate):>14.1%}")
    (old_peak, _), (new_peak, new_over) = old.over_cap(AWS_CONNECTION_CAP), new.over_cap(AWS_CONNECTION_CAP)
    print(f"{'busiest second delivered (msg)':52}{old_peak:>14}{new_peak:>14}")
    print(f"{'throttled by the front (its counts, all quotas)':52}{old_dropped:>14}{new_dropped:>14}")
    print(f"{'of which presence events received':52}{old.presence:>14}{'-':>14}")
    print(f"{'subscriptions on the connection (AWS max 50)':52}{len(old_filters):>14}{new_subs:>14}")
    print(f"front counts per quota: old {mqtt_throttled.get(old_id) or 'none'}; new {mqtt_throttled.get(new_id) or 'none'}")
    if args.bulk:
        print(f"bulk desired change on {args.bulk} things during the run: {bulk_ok}/{args.bulk} applied in "
              f"<= {bulk_s:.1f} s; the app's connection dropped {new_reconnects} times")
    if lat:
        print(f"reading -> SearchIndex shows it: p50 {statistics.median(lat):.2f} s, max {max(lat):.2f} s "
              f"({len(lat)}/{len(sampled)} sampled devices; goal within 15 s)")
    else:
        print("reading -> SearchIndex: no sampled device seen in 30 s")
    print(f"Device page history, last hour from DynamoDB: {len(history)} readings in {hist_s * 1000:.0f} ms")
    print(f"tiles: {tiles.total} things, temperature {tiles.temp_min}..{tiles.temp_max}")
    print(f"sandbox throttled (control plane): {status.get('throttled') or 'none'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
