"""`fleetdesk fleet simulate --count N [--rate HZ] [--state-dir D]`."""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser(
        "simulate", help="run N simulated boards (the real firmware under CPython) against the sandbox",
        description="Provision N things in the running sandbox (idempotent) and run the device firmware for "
                    "each, many per process, each with its own certificate and MQTT connection.")
    p.add_argument("--count", type=int, required=True, metavar="N", help="number of devices")
    p.add_argument("--rate", type=float, default=None, metavar="HZ",
                   help="telemetry messages per second per device (default: each device's refresh setting)")
    p.add_argument("--state-dir", type=Path, default=None, metavar="DIR",
                   help="sandbox state dir (default: the per-user sandbox)")
    p.add_argument("--fleet-dir", type=Path, default=None, metavar="DIR",
                   help="device directories (default: <state-dir>/fleet)")
    p.add_argument("--prefix", default="sim", help="thing name prefix (default sim -> sim-0000, ...)")
    p.add_argument("--processes", type=int, default=None, metavar="P", help="worker processes")
    p.add_argument("--duration", type=float, default=None, metavar="S", help="stop after S seconds")
    p.add_argument("--json", action="store_true", help="one JSON stats line per second")
    p.set_defaults(func=run)


def run(args) -> int:
    from fleetdesk.errors import SandboxError
    from fleetdesk.virtual.fleet_sim import FleetRunner, provision_fleet
    from fleetdesk.paths import sandbox_state_dir
    from fleetdesk.sandbox.info import SandboxInfo

    state = args.state_dir or sandbox_state_dir()
    info = SandboxInfo.load(state)
    if info is None:
        raise SandboxError(f"no sandbox is running for {state}",
                           "start one with `fleetdesk sandbox up` (same --state-dir)")
    fleet_dir = args.fleet_dir or Path(info.state_dir or state) / "fleet"

    def progress(done, total):
        if not args.json and (done == total or done % 50 == 0):
            print(f"provisioned {done}/{total}", file=sys.stderr)

    specs = provision_fleet(info, args.count, fleet_dir, prefix=args.prefix, progress=progress)
    runner = FleetRunner(specs, rate=args.rate, processes=args.processes, log_dir=fleet_dir / "logs")
    stopping = []
    signal.signal(signal.SIGTERM, lambda *a: stopping.append(1))
    runner.start()
    t0 = time.monotonic()
    last_sent = 0
    try:
        while not stopping and runner.alive:
            time.sleep(1.0)
            s = runner.stats.summary()
            elapsed = time.monotonic() - t0
            s["msg_per_s"] = s["sent"] - last_sent
            last_sent = s["sent"]
            s["elapsed"] = round(elapsed, 1)
            if args.json:
                print(json.dumps(s), flush=True)
            else:
                print(f"{s['elapsed']:7.1f}s  online {s['online']}/{len(specs)}  sent {s['sent']}  "
                      f"({s['msg_per_s']}/s)  sensor errors {s['read_errors']}", flush=True)
            if args.duration is not None and elapsed >= args.duration:
                break
    except KeyboardInterrupt:
        pass
    finally:
        runner.stop()
    return 0
