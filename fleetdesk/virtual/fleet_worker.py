"""A fleet worker process: many firmware instances on one asyncio loop (CPython).

Run as ``python -m fleetdesk.virtual.fleet_worker`` with a JSON job on stdin:
``{"worker": i, "rate": HZ|null, "ramp": s, "sensor_errors": p|null, "devices": [DeviceSpec...]}``. Prints one JSON
stats line per second on stdout; firmware console lines go to stderr. SIGTERM stops it.
A device whose firmware asks for a reset is started again (a reboot), like a real board.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from typing import Any


def _rss_kb() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    try:
        import resource

        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    except ImportError:
        return 0


def load_firmware():
    """Put firmware/ and firmware/hal on sys.path and return fd.app."""
    from fleetdesk.paths import FIRMWARE_DIR

    for p in (str(FIRMWARE_DIR / "hal"), str(FIRMWARE_DIR)):
        if p not in sys.path:
            sys.path.insert(0, p)
    from fd import app

    return app


class Sim:
    def __init__(self, job: dict) -> None:
        self.job = job
        self.worker = int(job.get("worker", 0))
        rate = job.get("rate")
        self.period_ms = int(1000 / rate) if rate else None
        self.devices: dict[str, Any] = {}  # the firmware's fd.app objects, loaded from firmware/ at run time
        self.boots = 0
        self.sent_before: dict[str, int] = {}

    async def run_one(self, app, spec: dict, delay: float) -> None:
        await asyncio.sleep(delay)
        ov = {"mac": bytes.fromhex(spec["mac"]), "chip": spec.get("chip", "esp32"),
              "dht_seed": spec["dht_seed"], "quiet": True, "backoff_max_ms": 10000}
        if self.period_ms:
            ov["telemetry_ms"] = self.period_ms
        if self.job.get("sensor_errors") is not None:
            ov["dht_error_rate"] = float(self.job["sensor_errors"])
        while True:
            dev = app.Device(spec["root"], ov)
            self.devices[spec["thing"]] = dev
            self.boots += 1
            try:
                reason = await dev.run()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a firmware crash: report and boot again, like a watchdog
                print(f"{spec['thing']}: firmware crashed: {exc!r}", file=sys.stderr)
                reason = "reset"
            tel = getattr(dev, "telemetry", None)
            if tel is not None:
                self.sent_before[spec["thing"]] = self.sent_before.get(spec["thing"], 0) + tel.sent
            if reason != "reset":
                return
            await asyncio.sleep(0.2)

    def stats(self) -> dict:
        online = sent = errors = dropped = 0
        for dev in self.devices.values():
            if dev.connected:
                online += 1
            tel = dev.telemetry
            if tel is not None:
                sent += tel.sent
                errors += tel.read_errors
                dropped += tel.dropped
        sent += sum(self.sent_before.values())
        return {"worker": self.worker, "devices": len(self.job["devices"]), "online": online, "sent": sent,
                "read_errors": errors, "dropped": dropped, "boots": self.boots, "rss_kb": _rss_kb(),
                "cpu_s": round(time.process_time(), 3),
                "t": time.time()}

    async def main(self, out) -> None:
        app = load_firmware()
        specs = self.job["devices"]
        ramp = float(self.job.get("ramp", 0))
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        tasks = [asyncio.create_task(self.run_one(app, s, ramp * i / max(1, len(specs))))
                 for i, s in enumerate(specs)]
        try:
            while not stop.is_set():
                out.write(json.dumps(self.stats()) + "\n")
                out.flush()
                try:
                    await asyncio.wait_for(stop.wait(), 1.0)
                except asyncio.TimeoutError:
                    pass
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.sleep(0)  # let each device's own tasks see their cancellation
            # counters are final once the devices stop: report before the (slower) disconnects
            out.write(json.dumps(self.stats()) + "\n")
            out.flush()
            clients = [d.client for d in self.devices.values() if d.client is not None and d.client.connected]
            if clients:
                try:
                    await asyncio.wait_for(asyncio.gather(*(c.disconnect() for c in clients),
                                                          return_exceptions=True), 5)
                except asyncio.TimeoutError:
                    pass


def main() -> int:
    job = json.loads(sys.stdin.read())
    out = os.fdopen(os.dup(1), "w")
    sys.stdout = sys.stderr  # firmware prints are console lines, not stats
    asyncio.run(Sim(job).main(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
