"""Sandbox core bench: provisioning rate, MQTT connect, publish round trip, revocation.

Side by side in ONE run: two sandboxes, one as shipped (the authorizer re-syncs only the
certificates a registry change touches) and one with FLEETDESK_SANDBOX_FULL_SYNC=1 (it
re-derives every certificate's rights on every change), each provisioning the same number
of device identities with boto3 (thing + keys/cert + policy + attachments). Then, on the
shipped sandbox, real awsiotsdk MQTT5 devices: mTLS connect time, publish->receive round
trip, how fast a live connection is dropped after UpdateCertificate(INACTIVE) and after a
connect with a wrong client id; and cold/warm start times.

Goals: revocation drop <= 2 s (the issue's requirement), wrong client id dropped <= 1 s,
connect p50 <= 0.5 s, start <= 5 s, and the shipped provisioning rate not slower than the
baseline.

Usage: .venv/bin/python bench/sandbox_core.py [--things 150] [--devices 10]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import boto3  # noqa: E402

from fleetdesk.cloud.identity import create_device_identity  # noqa: E402
from fleetdesk.sandbox.child import start_sandbox, stop_sandbox  # noqa: E402
from verdict import print_load_and_result  # noqa: E402


def provision(info, prefix: str, n: int) -> tuple[list, float, float]:
    iot = boto3.client("iot", **info.boto3_kwargs())
    idents, times = [], []
    t0 = time.perf_counter()
    for i in range(n):
        t = time.perf_counter()
        idents.append(create_device_identity(iot, f"{prefix}-{i:04d}"))
        times.append(time.perf_counter() - t)
    total = time.perf_counter() - t0
    last = statistics.median(times[-max(1, n // 5):])
    return idents, total, last


class Device:
    def __init__(self, info, ident, client_id=None):
        from awscrt import mqtt5
        from awsiot import mqtt5_client_builder

        self.m = mqtt5
        self.connected, self.disconnected, self.failed = threading.Event(), threading.Event(), threading.Event()
        self.got = threading.Event()
        self.client = mqtt5_client_builder.mtls_from_bytes(
            endpoint=info.mqtt_host, port=info.mqtt_port, cert_bytes=ident.certificate_pem.encode(),
            pri_key_bytes=ident.private_key_pem.encode(), ca_bytes=Path(info.ca_file).read_bytes(),
            client_id=client_id or ident.thing_name, min_reconnect_delay_ms=30000,
            on_publish_received=lambda d: self.got.set(),
            on_lifecycle_connection_success=lambda d: self.connected.set(),
            on_lifecycle_connection_failure=lambda d: (self.failed.set(), self.t_disc.append(time.perf_counter())),
            on_lifecycle_disconnection=lambda d: (self.disconnected.set(), self.t_disc.append(time.perf_counter())))
        self.t_disc: list[float] = []

    def connect(self) -> float:
        t = time.perf_counter()
        self.client.start()
        if not self.connected.wait(15):
            raise RuntimeError("connect failed")
        return time.perf_counter() - t

    def stop(self):
        self.client.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--things", type=int, default=150)
    ap.add_argument("--devices", type=int, default=10)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="fd-bench-sandbox-"))

    # -- baseline: full re-sync on every change ------------------------------------------
    proc, info = start_sandbox(tmp / "full", env={**os.environ, "FLEETDESK_SANDBOX_FULL_SYNC": "1"})
    try:
        _, full_total, full_last = provision(info, "full", args.things)
    finally:
        stop_sandbox(proc)

    # -- shipped ---------------------------------------------------------------------------
    t = time.perf_counter()  # cold = new state dir (CA, registry made); Python's file cache is warm now
    proc, info = start_sandbox(tmp / "shipped")
    cold_start = time.perf_counter() - t
    devs = []
    try:
        idents, ship_total, ship_last = provision(info, "dev", args.things)
        iot = boto3.client("iot", **info.boto3_kwargs())
        connects, rtts = [], []
        for ident in idents[: args.devices]:
            d = Device(info, ident)
            devs.append(d)
            connects.append(d.connect())
            m = d.m
            d.client.subscribe(m.SubscribePacket(subscriptions=[m.Subscription(
                topic_filter=f"dt/{ident.thing_name}/env", qos=m.QoS.AT_LEAST_ONCE)])).result(10)
            for _ in range(5):
                d.got.clear()
                t = time.perf_counter()
                d.client.publish(m.PublishPacket(topic=f"dt/{ident.thing_name}/env", payload=b"{}", qos=m.QoS.AT_LEAST_ONCE))
                d.got.wait(5)
                rtts.append(time.perf_counter() - t)
        drops = []
        for d, ident in zip(devs[:5], idents[:5], strict=False):
            t = time.perf_counter()
            iot.update_certificate(certificateId=ident.certificate_id, newStatus="INACTIVE")
            d.disconnected.wait(5)
            drops.append((d.t_disc[0] if d.t_disc else time.perf_counter() + 99) - t)
        wrong = []
        for ident in idents[args.devices: args.devices + 3]:
            d = Device(info, ident, client_id=ident.thing_name + "-x")
            devs.append(d)
            t = time.perf_counter()  # from the start: the front refuses the CONNECT, mosquitto drops it after
            d.client.start()
            for _ in range(500):
                if d.t_disc:
                    break
                d.failed.wait(0.01)
            wrong.append((d.t_disc[0] if d.t_disc else t + 99) - t)
    finally:
        for d in devs:
            d.stop()
        stop_sandbox(proc)
    t = time.perf_counter()
    proc, info = start_sandbox(tmp / "shipped")
    warm_start = time.perf_counter() - t
    stop_sandbox(proc)

    p50 = statistics.median
    ok = {
        "revocation": max(drops) <= 2.0,
        "wrong id": max(wrong) <= 1.0,
        "connect": p50(connects) <= 0.5,
        "start": max(cold_start, warm_start) <= 5.0,
        "provisioning": ship_total <= full_total * 1.05,
    }
    front = "on" if os.environ.get("FLEETDESK_SANDBOX_FRONT") == "1" else "off"
    print(f"bench: sandbox core ({args.things} identities provisioned per sandbox, {args.devices} MQTT5 devices, "
          f"mTLS front {front})")
    print("  goal:    revocation drop <= 2 s, wrong client id drop <= 1 s, connect p50 <= 0.5 s, start <= 5 s,")
    print("           provisioning (targeted authz sync) not slower than full re-sync")
    print(f"  shipped: provisioning {ship_total:.1f} s total, {ship_last * 1000:.0f} ms per identity at the end")
    print(f"  full:    provisioning {full_total:.1f} s total, {full_last * 1000:.0f} ms per identity at the end")
    print(f"  ratio:   full / shipped = {full_total / ship_total:.2f}x total, {full_last / ship_last:.2f}x at the end")
    print(f"  mqtt:    connect p50 {p50(connects) * 1000:.0f} ms, publish->receive p50 {p50(rtts) * 1000:.1f} ms")
    print(f"  revoke:  live connection dropped after UpdateCertificate(INACTIVE): max {max(drops) * 1000:.0f} ms "
          f"(p50 {p50(drops) * 1000:.0f} ms)")
    print(f"  wrongid: connection with a wrong client id refused/dropped (from its start): max {max(wrong) * 1000:.0f} ms")
    print(f"  start:   cold (new state dir) {cold_start:.2f} s, warm ({args.things} things) {warm_start:.2f} s")
    return print_load_and_result(all(ok.values()), 9, failed=[k for k, v in ok.items() if not v])


if __name__ == "__main__":
    sys.exit(main())
