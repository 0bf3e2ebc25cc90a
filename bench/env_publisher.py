"""The telemetry load of bench/ingest.py and bench/ui_latency.py: publisher processes (awscrt
MQTT5, a device SDK's client) that send ``dt/sim-NNNN/env`` DHT11 JSON for a slice of the
simulated devices, QoS 1, with at most WINDOW publishes in flight.

A child process, so the load never takes the measured process's interpreter:

    python bench/env_publisher.py PORT FIRST DEVICES MSGS WINDOW RATE NICE PREFIX

prints ``ready`` once connected, publishes when a line arrives on stdin, then prints
``done T0 T1`` (epoch s). RATE is total msg/s for this process (0 = as fast as the broker takes
them); NICE lowers its priority (devices are not on the app's machine in real life).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def start_publishers(port: int, devices: int, msgs: int, procs: int, *, rate: int = 0, nice: int = 0,
                     prefix: str = "bench-publisher", window: int = 2000) -> list[subprocess.Popen]:
    """Spawn ``procs`` publisher processes, each owning a slice of the devices; returns when
    all are connected (a line on each one's stdin starts it)."""
    out = []
    per = -(-devices // procs)
    for i in range(procs):
        first, count = i * per, min(per, devices - i * per)
        if count <= 0:
            break
        out.append(subprocess.Popen([sys.executable, str(Path(__file__).resolve()), str(port), str(first), str(count),
                                     str(msgs), str(window), str(rate // procs), str(nice), prefix],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
    for p in out:
        assert p.stdout is not None
        if p.stdout.readline().strip() != "ready":
            raise SystemExit("a publisher could not connect")
    return out


def main(argv: list[str]) -> int:
    import json
    import os
    import threading
    import time

    from awscrt import mqtt5

    port, first, devices, msgs, window, rate, nice = (int(a) for a in argv[:7])
    prefix = argv[7]
    if nice:
        os.nice(nice)
    connected = threading.Event()
    opts = mqtt5.ClientOptions(
        host_name="127.0.0.1", port=port,
        connect_options=mqtt5.ConnectPacket(client_id=f"{prefix}-{first}", username="bench", password=b"bench",
                                            keep_alive_interval_sec=60),
        on_lifecycle_event_connection_success_fn=lambda d: connected.set(),
        min_reconnect_delay_ms=100, max_reconnect_delay_ms=500,
        offline_queue_behavior=mqtt5.ClientOperationQueueBehaviorType.FAIL_NON_QOS1_PUBLISH_ON_DISCONNECT,
        disable_metrics=True)
    c = mqtt5.Client(opts)
    c.start()
    if not connected.wait(10):
        sys.exit("publisher: no connection")
    print("ready", flush=True)
    sys.stdin.readline()
    sem = threading.Semaphore(window)
    t0 = time.time()
    n = 0
    for s in range(msgs):
        for d in range(first, first + devices):
            sem.acquire()
            p = json.dumps({"temperature": 20.0 + (d % 10), "humidity": 40.0 + (s % 20), "ts": time.time(), "seq": s})
            f = c.publish(mqtt5.PublishPacket(topic="dt/sim-%04d/env" % d, payload=p.encode(),
                                              qos=mqtt5.QoS.AT_LEAST_ONCE))
            f.add_done_callback(lambda _f: sem.release())
            n += 1
            if rate and n % 50 == 0:
                ahead = t0 + n / rate - time.time()
                if ahead > 0:
                    time.sleep(ahead)
    for _ in range(window):
        sem.acquire()
    print("done %.3f %.3f" % (t0, time.time()), flush=True)
    c.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
