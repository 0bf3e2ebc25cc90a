"""Fleet scale: simulated devices (the real firmware under CPython) publishing telemetry.

Default: 1,000 devices at 10 msg/s each for 60 s against a fresh sandbox; an independent
subscriber (paho-mqtt on the sandbox's internal listener) counts what the broker delivered.

Prints, in one run: delivered/sent (goal >= 0.999), achieved msg/s (goal >= 10,000 at the
default size, count x rate x 0.999 in general), RSS per device, and provisioning time.

Usage:
    .venv/bin/python bench/fleet_scale.py [--count 1000] [--rate 10] [--seconds 60]
        [--processes P] [--state-dir DIR (reuse: provisioning is idempotent)]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fleetdesk.virtual.fleet_sim import FleetRunner, provision_fleet  # noqa: E402
from fleetdesk.sandbox.info import SandboxInfo  # noqa: E402

PORTS = 4  # mqtt, ws, https, internal (fleetdesk.sandbox.server.PORTS_USED)


def free_port_base() -> int:
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base + PORTS >= 65535:
            continue
        ok = True
        for p in range(base, base + PORTS):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", p))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise SystemExit("no free port range for the sandbox")


def start_sandbox(state_dir: Path, port_base: int):
    log = open(state_dir.parent / (state_dir.name + "-sandbox.log"), "ab")
    proc = subprocess.Popen([sys.executable, "-m", "fleetdesk", "sandbox", "up", "--json", "--state-dir",
                             str(state_dir), "--port-base", str(port_base)], stdout=subprocess.PIPE, stderr=log,
                            cwd=ROOT, start_new_session=True)
    log.close()
    line = proc.stdout.readline()
    if not line:
        proc.kill()
        raise SystemExit("sandbox did not start; see " + log.name)
    return proc, SandboxInfo.load(state_dir)


def stop(proc) -> None:
    """SIGTERM the sandbox, then make sure nothing of its process group (mosquitto) is left."""
    import signal

    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait(5)


class Counter:
    """paho-mqtt subscriber on dt/+/env (privileged internal listener)."""

    def __init__(self, host: str, port: int, user: str, password: str) -> None:
        import paho.mqtt.client as mqtt

        self.count = 0
        self.ready = threading.Event()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-fleet-counter", clean_session=True)
        c.username_pw_set(user, password)
        c.max_queued_messages_set(0)

        def on_connect(client, userdata, flags, rc, props=None):
            client.subscribe("dt/+/env", qos=0)

        def on_subscribe(*a):
            self.ready.set()

        def on_message(client, userdata, msg):
            self.count += 1

        c.on_connect, c.on_subscribe, c.on_message = on_connect, on_subscribe, on_message
        c.connect(host, port, keepalive=60)
        self.client = c
        self.thread = threading.Thread(target=c.loop_forever, daemon=True)
        self.thread.start()
        if not self.ready.wait(15):
            raise SystemExit("bench subscriber could not subscribe")

    def drain(self, quiet: float = 2.0, limit: float = 30.0) -> int:
        deadline = time.monotonic() + limit
        last, t_last = self.count, time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.2)
            if self.count != last:
                last, t_last = self.count, time.monotonic()
            elif time.monotonic() - t_last >= quiet:
                break
        return self.count

    def close(self) -> None:
        self.client.disconnect()
        self.thread.join(5)


def proc_cpu_s(pid: int) -> float:
    """utime+stime of a process (Linux /proc), seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def children_named(pid: int, name: str) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            comm = stat[stat.index("(") + 1:stat.rindex(")")]
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == pid and comm == name:
                out.append(int(d.name))
    return out


def baseline_rss_kb() -> int:
    """RSS of a worker process with the firmware imported and no devices."""
    code = "import fleetdesk.virtual.fleet_worker as w; w.load_firmware(); import ssl; print(w._rss_kb())"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    return int(r.stdout.strip() or 0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--rate", type=float, default=10.0, help="msg/s per device")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--processes", type=int, default=None)
    ap.add_argument("--state-dir", type=Path, default=None, help="sandbox state dir to (re)use")
    ap.add_argument("--sensor-errors", type=float, default=0.0,
                    help="simulated DHT11 read failure rate (default 0: measure the transport; 0.02 = realistic)")
    args = ap.parse_args()

    tmp = None
    state_dir = args.state_dir
    if state_dir is None:
        tmp = Path(tempfile.mkdtemp(prefix="fleet-bench-"))
        state_dir = tmp / "sandbox"
    state_dir = state_dir.resolve()
    state_dir.parent.mkdir(parents=True, exist_ok=True)
    base = free_port_base()
    sandbox, info = start_sandbox(state_dir, base)
    runner = counter = None
    try:
        creds = json.loads((state_dir / "credentials.json").read_text())
        ep = json.loads((state_dir / "endpoint.json").read_text())
        internal_port = int(ep.get("internal_port") or base + 3)
        print(f"sandbox up: mqtt {info.mqtt_port}, internal {internal_port}; provisioning {args.count} things ...",
              flush=True)
        t = time.monotonic()
        specs = provision_fleet(info, args.count, state_dir / "fleet", prefix="bench")
        t_prov = time.monotonic() - t
        counter = Counter("127.0.0.1", internal_port, creds["internal_username"], creds["internal_password"])
        runner = FleetRunner(specs, rate=args.rate, processes=args.processes, log_dir=state_dir / "fleet" / "logs",
                             sensor_errors=args.sensor_errors)
        runner.start()
        t = time.monotonic()
        online = runner.wait_online(max(120.0, args.count / 5))
        t_online = time.monotonic() - t
        if not online:
            print(f"not all devices came online: {runner.stats.summary()}")
        time.sleep(2.0)
        brokers = children_named(sandbox.pid, "mosquitto")
        d0, s0, t0 = counter.count, runner.stats.total("sent"), time.monotonic()
        w0 = sum(float(w.get("cpu_s", 0)) for w in runner.stats.workers.values())
        b0 = sum(proc_cpu_s(p) for p in brokers)
        sb0 = proc_cpu_s(sandbox.pid)
        time.sleep(args.seconds)
        d1, s1, t1 = counter.count, runner.stats.total("sent"), time.monotonic()
        w1 = sum(float(w.get("cpu_s", 0)) for w in runner.stats.workers.values())
        b1 = sum(proc_cpu_s(p) for p in brokers)
        sb1 = proc_cpu_s(sandbox.pid)
        load = os.getloadavg()[0]
        summary = runner.stats.summary()
        runner.stop()
        sent = runner.stats.total("sent")
        delivered = counter.drain()
    finally:
        if runner is not None:
            runner.stop()
        if counter is not None:
            counter.close()
        stop(sandbox)
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)

    window = t1 - t0
    rate_delivered = (d1 - d0) / window
    rate_sent = (s1 - s0) / window
    ratio = delivered / sent if sent else 0.0
    goal_rate = args.count * args.rate * 0.999
    base_rss = baseline_rss_kb()
    rss_total = summary["rss_kb"]
    procs = len(runner.stats.workers)
    per_dev = rss_total / args.count
    marginal = (rss_total - procs * base_rss) / args.count

    print()
    print(f"fleet scale: {args.count} devices x {args.rate:g} msg/s, {window:.0f} s window, "
          f"{procs} worker processes, {os.cpu_count()} CPUs")
    print(f"  provisioning: {t_prov:.1f} s ({t_prov / args.count * 1000:.0f} ms/device; reused if cached); "
          f"all online after {t_online:.1f} s")
    print(f"  delivered/sent        goal >= 0.999    figure {delivered}/{sent} = {ratio:.4f}    "
          f"{'PASS' if ratio >= 0.999 else 'FAIL'}")
    print(f"  delivered msg/s       goal >= {goal_rate:,.0f} (count x rate, 0.1% tolerance)  figure {rate_delivered:,.0f} "
          f"(sent {rate_sent:,.0f}/s)  ratio {rate_delivered / goal_rate:.2f}    "
          f"{'PASS' if rate_delivered >= goal_rate else 'FAIL'}")
    print(f"  RSS per device        figure {per_dev:,.0f} KB total/devices; {marginal:,.0f} KB marginal "
          f"(worker baseline {base_rss / 1024:.0f} MB x {procs})")
    n = max(1, s1 - s0)
    print(f"  CPU per message       devices {(w1 - w0) / n * 1e6:,.0f} us, mosquitto {(b1 - b0) / n * 1e6:,.0f} us, "
          f"sandbox services {(sb1 - sb0) / n * 1e6:,.0f} us (load average {load:.1f} on {os.cpu_count()} CPUs)")
    need = (w1 - w0 + b1 - b0 + sb1 - sb0) / n * goal_rate
    print(f"  => {goal_rate:,.0f} msg/s needs about {need:.1f} CPU cores for devices+broker+services")
    print(f"  sensor read errors    {summary['read_errors']} (simulated DHT11 failure rate {args.sensor_errors:g})")
    return 0 if ratio >= 0.999 and rate_delivered >= goal_rate else 1


if __name__ == "__main__":
    sys.exit(main())
