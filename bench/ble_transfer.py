"""BLE provisioning transfer bench: bytes/s of a 4 KB cert bundle (CA + cert + key) through the
in-process virtual transport and through BlueZoo (bleak's real BlueZ backend) at MTU 23, 185
and 512, plus the time to resume after the link drops at 50 %.

The board side is the real firmware Config mode (fd.ble_config) under the MicroPython unix
port. Every figure is measured in this one run, side by side.

    .venv/bin/python bench/ble_transfer.py [--rounds N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fleetdesk.ble.client import ProvisioningClient  # noqa: E402
from fleetdesk.virtual.ble_link import VirtualBleakClient, advertisements  # noqa: E402
from verdict import print_goal  # noqa: E402

POP = "bench-pop-0001"
MAC = "240ac4b0b1b2"
ADDR = "24:0A:C4:B0:B1:B4"
BUNDLE = {"ca": 1188, "cert": 1224, "key": 1704}  # sizes of a real AWS CA1 + RSA-2048 cert + key, ~4 KB
GOAL_BPS_185 = 1000.0  # a 4 KB bundle in about 4 s at a typical phone/laptop MTU
GOAL_RESUME_S = 2.0


def start_device(tmp: Path) -> subprocess.Popen:
    fs = tmp / "fs"
    shutil.rmtree(fs, ignore_errors=True)
    fs.mkdir()
    (fs / "config.json").write_text(json.dumps({"pop": POP}))
    env = dict(os.environ, FD_MAC=MAC)
    proc = subprocess.Popen([str(ROOT / ".venv/bin/micropython"), str(ROOT / "tests/ble/device_main.py"), str(fs)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while not any(e["address"] == ADDR for e in advertisements(probe=False)):
        if time.monotonic() > deadline or proc.poll() is not None:
            raise SystemExit("virtual board did not start")
        time.sleep(0.05)
    return proc


def bundle() -> dict[str, bytes]:
    return {name: os.urandom(size) for name, size in BUNDLE.items()}  # fresh bytes: no resume shortcut


async def send_bundle(prov: ProvisioningClient) -> float:
    files = bundle()
    t0 = time.perf_counter()
    for name, data in files.items():
        await prov.send_file(name, data)
    return sum(map(len, files.values())) / (time.perf_counter() - t0)


async def run_virtual(mtu: int, rounds: int) -> float:
    async with ProvisioningClient(ADDR, POP, backend=VirtualBleakClient, mtu=mtu) as prov:
        assert prov.mtu == mtu, prov.mtu
        return max([await send_bundle(prov) for _ in range(rounds)])


async def run_bluez(mtu: int, rounds: int) -> float:
    from fleetdesk.virtual.ble_bluez import BluezPeripheralRelay

    deadline = time.monotonic() + 10
    while not (entries := [e for e in advertisements() if e["address"] == ADDR]):  # board re-advertising
        if time.monotonic() > deadline:
            raise RuntimeError("the board stopped advertising")
        await asyncio.sleep(0.05)
    from fleetdesk.ble.scanner import scan

    # scan first, then put the board on hci1: BlueZoo reports a device when its object appears
    task = asyncio.create_task(scan(15, stop_when=lambda f: f.address == ADDR, bluez={"adapter": "hci0"}))
    await asyncio.sleep(0.3)
    relay = await BluezPeripheralRelay(entries[0], "hci1", mtu=mtu).start()
    try:
        found = [f for f in await task if f.address == ADDR]
        if not found:
            raise RuntimeError("BlueZ scan did not report the board")
        async with ProvisioningClient(found[0].device, POP, bluez={"adapter": "hci0"}) as prov:
            assert prov.mtu == mtu, prov.mtu
            return max([await send_bundle(prov) for _ in range(rounds)])
    finally:
        await relay.stop()


async def run_resume() -> tuple[float, float, int]:
    """(seconds from the drop to the next acknowledged chunk, total seconds, offset resumed at)."""
    key = os.urandom(4096)
    marks: dict[str, float] = {}
    box: list[ProvisioningClient] = []

    def progress(name: str, done: int, total: int) -> None:
        if "drop" not in marks and done >= total // 2:
            marks["drop"], marks["at"] = time.perf_counter(), done
            box[0].client._backend.simulate_link_loss()
        elif "drop" in marks and "resume" not in marks and box[0].reconnects:
            marks["resume"], marks["resumed_at"] = time.perf_counter(), done

    prov = ProvisioningClient(ADDR, POP, backend=VirtualBleakClient, mtu=185, progress=progress)
    box.append(prov)
    try:
        await prov.connect()
        t0 = time.perf_counter()
        await prov.send_file("key", key)
        total = time.perf_counter() - t0
    finally:
        await prov.close()
    return marks["resume"] - marks["drop"], total, int(marks["resumed_at"])


class BlueZoo:
    def __init__(self, tmp: Path) -> None:
        self.procs: list[subprocess.Popen] = []
        self.tmp = tmp

    def __enter__(self) -> "BlueZoo":
        bz = Path(sys.executable).with_name("bluezoo")
        if not (sys.platform.startswith("linux") and shutil.which("dbus-daemon") and bz.exists()):
            raise RuntimeError("BlueZoo needs Linux, dbus-daemon and the bluezoo package")
        d = subprocess.Popen(["dbus-daemon", "--session", "--nofork", "--print-address=1",
                              f"--address=unix:tmpdir={self.tmp}"], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True)
        self.procs.append(d)
        addr = d.stdout.readline().strip()
        env = dict(os.environ, DBUS_SESSION_BUS_ADDRESS=addr)
        self.procs.append(subprocess.Popen([str(bz), "--bus-session", "--auto-enable", "--scan-interval", "1", "-q",
                                            "-a", "00:00:00:01:00:00", "-a", ADDR], env=env,
                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = addr
        deadline = time.monotonic() + 20
        while subprocess.run(["busctl", f"--address={addr}", "status", "org.bluez"], capture_output=True).returncode:
            if time.monotonic() > deadline:
                raise RuntimeError("BlueZoo did not start")
            time.sleep(0.1)
        return self

    def __exit__(self, *exc: object) -> None:
        for p in reversed(self.procs):
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3, help="bundles per configuration (best is kept)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ble-bench-"))
    os.environ["FLEETDESK_BLE_REGISTRY"] = str(tmp / "registry")
    results: dict[tuple[str, int], float] = {}
    ok = True
    proc = start_device(tmp)
    try:
        for mtu in (23, 185, 512):
            results["in-process", mtu] = asyncio.run(run_virtual(mtu, args.rounds))
        resume_s, resume_total, resumed_at = asyncio.run(run_resume())
        try:
            for mtu in (23, 185, 512):
                with BlueZoo(tmp):  # a fresh fake BlueZ (adapters, device objects) per MTU
                    results["BlueZoo", mtu] = asyncio.run(run_bluez(mtu, args.rounds))
        except RuntimeError as exc:
            print(f"BlueZoo skipped: {exc}")
    finally:
        proc.kill()
        proc.wait(5)
        shutil.rmtree(tmp, ignore_errors=True)

    size = sum(BUNDLE.values())
    print(f"BLE provisioning transfer, {size} B bundle (CA + cert + key), firmware under MicroPython, best of {args.rounds}")
    print(f"{'transport':<11} {'MTU':>4} {'bytes/s':>9} {'bundle s':>9}  vs MTU 23")
    for (transport, mtu), bps in results.items():
        print(f"{transport:<11} {mtu:>4} {bps:>9.0f} {size / bps:>9.2f}  x{bps / results[transport, 23]:.1f}")
    for transport in ("in-process", "BlueZoo"):
        if (transport, 185) in results:
            bps = results[transport, 185]
            ok &= print_goal(f"{transport} MTU 185 >= {GOAL_BPS_185:.0f} B/s", f"{bps:.0f} B/s",
                             bps >= GOAL_BPS_185, bps / GOAL_BPS_185)
    ok &= print_goal(f"resume after a drop at 50% <= {GOAL_RESUME_S:.1f} s",
                     f"{resume_s:.2f} s (resumed at byte {resumed_at} of 4096, whole 4 KB file {resume_total:.2f} s)",
                     resume_s <= GOAL_RESUME_S, resume_s / GOAL_RESUME_S)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
