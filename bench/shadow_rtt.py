"""Shadow bench: update -> delta round trip vs a plain publish -> receive on the same broker.

Side by side in ONE run against a fresh sandbox (started as a child, free ports): one
thing connected over mTLS (paho, MQTT 3.1.1, QoS 1) alternates
  * plain: publish to ``dt/<thing>/echo`` (subscribed by itself) and wait for it to come back;
  * shadow: publish ``{"state":{"desired":{"v":i}}}`` to ``$aws/things/<thing>/shadow/update``
    and wait for ``/update/delta`` (the shadow service parses, merges, commits to SQLite
    and publishes accepted + delta + documents).
Goals: shadow p50 < 5 ms and shadow p50 <= 3x plain p50. Also printed (info): a burst of
updates over 500 shadows from one privileged client: all answered, none lost, requests/s.

Usage: .venv/bin/python bench/shadow_rtt.py [--count 1000] [--warmup 50] [--burst 5000]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

GOAL_P50_MS = 5.0
GOAL_RATIO = 3.0


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


class Device:
    """A paho client with the thing's certificate and a one-slot waiter per topic."""

    def __init__(self, info, ident, tmp: Path) -> None:
        import paho.mqtt.client as paho

        cert, key = tmp / "cert.pem", tmp / "key.pem"
        cert.write_text(ident.certificate_pem)
        key.write_text(ident.private_key_pem)
        key.chmod(0o600)
        self.want: str | None = None
        self.got = threading.Event()
        self.c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=ident.thing_name)
        self.c.tls_set(ca_certs=info.ca_file, certfile=str(cert), keyfile=str(key))
        self.c.on_message = self._on_message
        self.c.connect(info.mqtt_host, info.mqtt_port, keepalive=60)
        # paho leaves Nagle on; a real device stack (lwIP/awscrt) sends small packets at once
        self.c.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.c.loop_start()

    def _on_message(self, client, userdata, msg) -> None:
        if msg.topic == self.want:
            self.got.set()

    def subscribe(self, topics: list[str]) -> None:
        done = threading.Event()
        self.c.on_subscribe = lambda *a: done.set()
        self.c.subscribe([(t, 1) for t in topics])
        if not done.wait(10):
            raise RuntimeError("subscribe timed out")

    def round_trip(self, topic: str, payload: bytes, reply_topic: str) -> float:
        self.want = reply_topic
        self.got.clear()
        t0 = time.perf_counter()
        self.c.publish(topic, payload, qos=1)
        if not self.got.wait(10):
            raise RuntimeError(f"no message on {reply_topic}")
        return (time.perf_counter() - t0) * 1000

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


def burst(info, count: int, things: int = 500) -> tuple[int, int, int, float]:
    """Fire ``count`` updates over ``things`` shadows as fast as possible (privileged client).

    Returns:
        (accepted, rejected, stored versions, seconds until the last answer).
    """
    import boto3
    import paho.mqtt.client as paho

    state = Path(info.state_dir)
    creds = json.loads((state / "credentials.json").read_text())
    conf = (state / "broker" / "mosquitto.conf").read_text().split("\nlistener ")[1:]
    port = next(int(b.split()[0]) for b in conf if "cafile" not in b and "protocol websockets" not in b)
    counts = {"accepted": 0, "rejected": 0}
    last = [0.0]
    done = threading.Event()
    prefix = f"burst-{uuid.uuid4().hex[:4]}"

    def on_message(client, userdata, msg) -> None:
        counts[msg.topic.rsplit("/", 1)[1]] += 1
        last[0] = time.perf_counter()
        if counts["accepted"] + counts["rejected"] >= count:
            done.set()

    c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=prefix)
    c.username_pw_set(creds["internal_username"], creds["internal_password"])
    c.on_message = on_message
    subscribed = threading.Event()
    c.on_subscribe = lambda *a: subscribed.set()
    c.connect("127.0.0.1", port)
    c.loop_start()
    c.subscribe([("$aws/things/+/shadow/update/accepted", 1), ("$aws/things/+/shadow/update/rejected", 1)])
    subscribed.wait(10)
    t0 = time.perf_counter()
    for i in range(count):
        c.publish(f"$aws/things/{prefix}-{i % things}/shadow/update",
                  json.dumps({"state": {"reported": {"seq": i}}}), qos=1)
    done.wait(120)
    c.loop_stop()
    c.disconnect()
    data = boto3.client("iot-data", **info.boto3_kwargs())
    versions = 0
    for t in range(min(things, count)):
        doc = json.loads(data.get_thing_shadow(thingName=f"{prefix}-{t}")["payload"].read())
        versions += doc["version"]
    return counts["accepted"], counts["rejected"], versions, last[0] - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--burst", type=int, default=5000, help="updates in the burst test (0 = skip)")
    args = ap.parse_args()

    import boto3

    from fleetdesk.cloud.identity import create_device_identity
    from fleetdesk.sandbox.child import start_sandbox, stop_sandbox

    with tempfile.TemporaryDirectory(prefix="shadow-rtt-") as tmpdir:
        tmp = Path(tmpdir)
        # one device doing back-to-back round trips publishes far over IoT Core's 100/s per
        # connection (the sandbox drops the excess, as AWS does): this bench measures latency
        quotas = "PublishInPerSecond=off,PublishOutPerSecond=off"
        print(f"sandbox quotas lifted for this bench: {quotas}", flush=True)
        proc, info = start_sandbox(tmp / "state", env={**os.environ, "FLEETDESK_SANDBOX_QUOTAS": quotas})
        dev = None
        try:
            iot = boto3.client("iot", **info.boto3_kwargs())
            thing = f"bench-{uuid.uuid4().hex[:6]}"
            ident = create_device_identity(iot, thing)
            dev = Device(info, ident, tmp)
            base = f"$aws/things/{thing}/shadow"
            echo = f"dt/{thing}/echo"
            # like IotShadowClientV2's delta stream: the device listens to /update/delta only
            dev.subscribe([echo, base + "/update/delta"])
            dev.round_trip(base + "/update", b'{"state":{"desired":{"v":-1},"reported":{"v":-2}}}',
                           base + "/update/delta")
            plain, shadow = [], []
            for i in range(args.warmup + args.count):
                p = dev.round_trip(echo, json.dumps({"seq": i}).encode(), echo)
                s = dev.round_trip(base + "/update", json.dumps({"state": {"desired": {"v": i}}}).encode(),
                                   base + "/update/delta")
                if i >= args.warmup:
                    plain.append(p)
                    shadow.append(s)
            burst_result = burst(info, args.burst) if args.burst else None
        finally:
            if dev:
                dev.close()
            stop_sandbox(proc)

    p50p, p95p = statistics.median(plain), pct(plain, 0.95)
    p50s, p95s = statistics.median(shadow), pct(shadow, 0.95)
    ratio = p50s / p50p
    ok_abs, ok_ratio = p50s < GOAL_P50_MS, ratio <= GOAL_RATIO
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"shadow_rtt: {args.count} round trips each, same broker, same mTLS client, interleaved "
          f"({os.cpu_count()} CPUs, load average {load:.1f})")
    print(f"  plain publish->receive   p50 {p50p:6.2f} ms   p95 {p95p:6.2f} ms")
    print(f"  shadow update->delta     p50 {p50s:6.2f} ms   p95 {p95s:6.2f} ms")
    print(f"  goal: shadow p50 < {GOAL_P50_MS} ms -> {p50s:.2f} ms: {'PASS' if ok_abs else 'FAIL'}")
    print(f"  goal: ratio <= {GOAL_RATIO} -> {ratio:.2f}x: {'PASS' if ok_ratio else 'FAIL'}")
    if burst_result:
        acc, rej, versions, secs = burst_result
        lost = args.burst - acc - rej
        print(f"  burst (info): {args.burst} updates over 500 shadows from one client: {acc} accepted, "
              f"{rej} rejected (429), {lost} unanswered, stored versions {versions}; "
              f"{(acc + rej) / secs:.0f} requests/s")
    return 0 if ok_abs and ok_ratio else 1


if __name__ == "__main__":
    sys.exit(main())
