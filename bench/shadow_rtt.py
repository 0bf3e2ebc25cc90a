"""Shadow bench: update -> delta round trip vs a plain publish -> receive on the same broker.

Side by side in ONE run against a fresh sandbox (started as a child, free ports): one
thing connected over mTLS (paho, MQTT 3.1.1, QoS 1) alternates
  * plain: publish to ``dt/<thing>/echo`` (subscribed by itself) and wait for it to come back;
  * shadow: publish ``{"state":{"desired":{"v":i}}}`` to ``$aws/things/<thing>/shadow/update``
    and wait for ``/update/delta`` (the shadow service parses, merges, commits to SQLite
    and publishes accepted + delta + documents).
Goals: shadow p50 < 5 ms and shadow p50 <= 3x plain p50.

Usage: .venv/bin/python bench/shadow_rtt.py [--count 1000] [--warmup 50]
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--warmup", type=int, default=50)
    args = ap.parse_args()

    import boto3

    from fleetdesk.cloud.identity import create_device_identity
    from fleetdesk.sandbox.child import start_sandbox, stop_sandbox

    with tempfile.TemporaryDirectory(prefix="shadow-rtt-") as tmpdir:
        tmp = Path(tmpdir)
        proc, info = start_sandbox(tmp / "state")
        dev = None
        try:
            iot = boto3.client("iot", **info.boto3_kwargs())
            thing = f"bench-{uuid.uuid4().hex[:6]}"
            ident = create_device_identity(iot, thing)
            dev = Device(info, ident, tmp)
            base = f"$aws/things/{thing}/shadow"
            echo = f"dt/{thing}/echo"
            dev.subscribe([echo, base + "/update/delta", base + "/update/accepted"])
            dev.round_trip(base + "/update", b'{"state":{"reported":{"v":-1}}}', base + "/update/accepted")
            plain, shadow = [], []
            for i in range(args.warmup + args.count):
                p = dev.round_trip(echo, json.dumps({"seq": i}).encode(), echo)
                s = dev.round_trip(base + "/update", json.dumps({"state": {"desired": {"v": i}}}).encode(),
                                   base + "/update/delta")
                if i >= args.warmup:
                    plain.append(p)
                    shadow.append(s)
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
    return 0 if ok_abs and ok_ratio else 1


if __name__ == "__main__":
    sys.exit(main())
