"""Firmware heap bench: the smallest GC heap at which each firmware mode still works.

For each mode and each variant (the firmware shipped as ``.py`` sources, as mpy-cross
``.mpy``, or ``frozen`` into the MicroPython image with only main.py on the filesystem, as
``firmware build --base <image> --frozen`` ships it) it boots the real firmware under the MicroPython unix port (a virtual board's
runtime, fleetdesk.virtual.runtime) with a given heap and bisects (4 KB steps) for the
smallest heap at which the mode completes with no MemoryError:

  config  Config mode + full BLE provisioning (scan, PoP session, Wi-Fi, cloud, CA + RSA
          cert + key files, commit) over the in-process virtual BLE link
  normal  Normal mode: TLS (mTLS to mosquitto), shadow report + get, telemetry, a config
          job to SUCCEEDED, Sys.GetInfo over RPC
  delta   normal + an 8 KB shadow delta applied and reported
  ota     normal + an OTA job: HTTPS download of the package (same variant), install, reboot,
          job SUCCEEDED on the new version

Heaps are chip-equivalent (what the GC heap of a 32-bit ESP32 holds): the runtime scales
them by WORD_INFLATION for a 64-bit unix port and by 1 for a 32-bit one
(fleetdesk.virtual.runtime.word_inflation; the raw ``-X heapsize`` is printed too).
``--micropython PATH`` runs another unix port than the installed one; the ``frozen``
variant needs one with fd/ frozen in: bench/build_unix_port.py builds it from a MicroPython
source tree, 32-bit (i386, objects sized as on an ESP32) with firmware/manifest_unix.py, the
same fd/ that firmware/manifest.py freezes into an ESP32_GENERIC image. Frozen bytecode and
its constant tables live in the image (flash on a chip), so the app's code takes no GC heap.
After an OTA a frozen board runs the package's ``.mpy`` file set from its slot, so the ota
row of the frozen variant ends on ``.mpy`` code.
Then, per chip budget (fleetdesk.virtual.chips.HEAP_BUDGETS), the headroom: the share of the
budget still free at that mode's peak (goal >= 25 % on a stock ESP32).

The broker is the firmware tests' plain mTLS mosquitto (tests/firmware/tlsbroker.py); the
cloud side (jobs, deltas, RPC) is played by an aiomqtt client, as in tests/firmware.

Usage: .venv/bin/python bench/firmware_heap.py [--modes normal,delta,ota,config]
       [--variants py,mpy,frozen] [--lo 16] [--hi 320] [--firmware DIR]
       [--micropython PATH] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import ssl
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "firmware"))

from fleetdesk.virtual.chips import HEAP_BUDGETS  # noqa: E402
from fleetdesk.virtual.firmware_peers import MessageLog, OtaFileServer  # noqa: E402
from fleetdesk.virtual.runtime import (  # noqa: E402
    MICROPYTHON_ENV,
    launch_firmware,
    micropython_binary,
    unix_heapsize,
    word_inflation,
)

MODES = ("config", "normal", "delta", "ota")
VARIANTS = ("py", "mpy", "frozen")
POP = "pop-bench-1234"
NETS = {"fieldnet": "secret123"}
DELTA_BYTES = 8 * 1024
STEP_KB = 4


class Trial:
    """One boot of the firmware at one heap: a console buffer and a verdict."""

    def __init__(self, handle, out: bytearray):
        self.handle = handle
        self.out = out

    @property
    def console(self) -> str:
        return self.out.decode(errors="replace")

    def broken(self) -> str | None:
        text = self.console
        if "MemoryError" in text:
            line = next((ln for ln in text.splitlines() if "MemoryError" in ln), "MemoryError")
            return line.strip()[:160]
        if not self.handle.running:
            return "firmware stopped (exit %s)" % self.handle.returncode
        return None


FIRMWARE = None  # --firmware: another firmware tree (e.g. an older commit's) instead of firmware/


def app_files(variant: str) -> dict[str, bytes]:
    from fleetdesk.boards.bundle import firmware_files

    files = firmware_files(FIRMWARE, compiled=variant != "py") if FIRMWARE is not None else \
        firmware_files(compiled=variant != "py")
    if variant == "frozen":  # what `firmware build --frozen` puts on the vfs: main.py only
        files = {p: d for p, d in files.items() if not p.startswith("/fd/")}
    return files


def check_frozen(binary: str) -> str | None:
    """Why `binary` cannot measure the frozen variant (None when it can)."""
    data = Path(binary).read_bytes()
    if b"fd/app.py" not in data:
        return (f"{binary} has no frozen fd/ app in it: build one with bench/build_unix_port.py "
                "(firmware/manifest_unix.py) and pass it as --micropython")
    root = FIRMWARE or ROOT / "firmware"
    newer = [p.name for p in (root / "fd").glob("*.py") if p.stat().st_mtime > Path(binary).stat().st_mtime]
    if newer:
        return f"{binary} is older than {', '.join(sorted(newer))}: rebuild it (bench/build_unix_port.py)"
    return None


def write_fs(root: Path, files: dict[str, bytes], config: dict, certs: dict[str, bytes], settings=None) -> None:
    if root.exists():
        shutil.rmtree(root)
    for path, data in files.items():
        p = root / path.lstrip("/")
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    (root / "certs").mkdir(parents=True, exist_ok=True)
    for name, data in certs.items():
        (root / "certs" / name).write_bytes(data)
    (root / "config.json").write_text(json.dumps(config))
    if settings:
        (root / "settings.json").write_text(json.dumps(settings))


@dataclass
class Bench:
    tmp: Path
    broker: Any
    cloud: MessageLog
    files: OtaFileServer
    chip: str
    n: int = 0
    info: dict = field(default_factory=dict)

    async def trial(self, mode: str, variant: str, heap_kb: int) -> tuple[bool, str]:
        self.n += 1
        thing = f"hb{self.n}"
        fs = self.tmp / "fs"
        out = bytearray()
        env = {}
        if mode == "config":
            reg = self.tmp / f"ble{self.n}"
            reg.mkdir()
            os.environ["FLEETDESK_BLE_REGISTRY"] = str(reg)
            env = {"FLEETDESK_BLE_REGISTRY": str(reg), "FD_WIFI_NETWORKS": json.dumps(NETS)}
            write_fs(fs, app_files(variant), {"pop": POP, "product": "bench"}, {})
        else:
            c = self.broker.ca.issue(thing)
            write_fs(fs, app_files(variant), {"thing_name": thing, "endpoint": "localhost",
                                              "port": self.broker.port, "region": "us-east-1"},
                     {"ca.der": self.broker.ca.der, "cert.der": c.cert_der, "key.der": c.key_der},
                     {"refresh": 1000})
        h = launch_firmware(fs, mac="24:0a:c4:%02x:%02x:%02x" % (1, self.n >> 8 & 255, self.n & 255),
                            chip=self.chip, console=out.extend, env=env, heap=heap_kb * 1024)
        trial = Trial(h, out)
        try:
            if mode == "config":
                await self._config(trial)
            else:
                await self._normal(trial, thing, mode, variant)
            why = trial.broken()
            return (why is None), (why or "ok")
        except Exception as exc:  # noqa: BLE001 (ProvisioningError, MqttError, timeouts: this heap did not do it)
            return False, str(exc)[:160] or exc.__class__.__name__
        finally:
            await asyncio.to_thread(h.stop)

    async def _config(self, trial: Trial) -> None:
        from fleetdesk.ble.certs import cert_der, key_der
        from fleetdesk.ble.client import ProvisioningClient
        from fleetdesk.ble.scanner import scan
        from fleetdesk.virtual.ble_link import VirtualBleakClient, VirtualBleakScanner

        deadline = time.monotonic() + 20
        while "waiting for BLE provisioning" not in trial.console:
            if trial.broken() or time.monotonic() > deadline:
                raise RuntimeError(trial.broken() or "Config mode never started")
            await asyncio.sleep(0.05)
        found = await scan(timeout=8, backend=VirtualBleakScanner, stop_when=lambda f: True)
        if not found:
            raise RuntimeError(trial.broken() or "not advertising")
        certs = self._rsa_certs()
        async with ProvisioningClient(found[0].device, POP, backend=VirtualBleakClient, mtu=185) as prov:
            await prov.wifi_scan()
            await prov.set_wifi("fieldnet", "secret123")
            await prov.set_cloud("localhost", 8883, "thing-bench", region="eu-west-1")
            await prov.send_file("ca", cert_der(certs[0]))
            await prov.send_file("cert", cert_der(certs[1]))
            await prov.send_file("key", key_der(certs[2]))
            result = await prov.commit()
        if not result.get("committed"):
            raise RuntimeError("commit refused: %r" % (result,))

    _certs = None

    def _rsa_certs(self):
        """CA (EC) + a device cert with an RSA-2048 key, as AWS IoT issues them (PEM)."""
        if Bench._certs is None:
            import datetime as dt

            from cryptography import x509
            from cryptography.hazmat.primitives import hashes, serialization
            from cryptography.hazmat.primitives.asymmetric import ec, rsa
            from cryptography.x509.oid import NameOID

            now = dt.datetime.now(dt.timezone.utc)
            name = lambda cn: x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])  # noqa: E731
            ca_key = ec.generate_private_key(ec.SECP256R1())
            ca = (x509.CertificateBuilder().subject_name(name("CA")).issuer_name(name("CA"))
                  .public_key(ca_key.public_key()).serial_number(1).not_valid_before(now)
                  .not_valid_after(now + dt.timedelta(days=30)).sign(ca_key, hashes.SHA256()))
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            cert = (x509.CertificateBuilder().subject_name(name("thing")).issuer_name(ca.subject)
                    .public_key(key.public_key()).serial_number(2).not_valid_before(now)
                    .not_valid_after(now + dt.timedelta(days=30)).sign(ca_key, hashes.SHA256()))
            pem = serialization.Encoding.PEM
            Bench._certs = (ca.public_bytes(pem), cert.public_bytes(pem),
                            key.private_bytes(pem, serialization.PrivateFormat.TraditionalOpenSSL,
                                              serialization.NoEncryption()))
        return Bench._certs

    async def _normal(self, trial: Trial, thing: str, mode: str, variant: str) -> None:
        cloud = self.cloud
        sh = f"$aws/things/{thing}/shadow"
        jobs = f"$aws/things/{thing}/jobs"
        m = len(cloud.msgs)

        def expect(topic: str, pred=lambda d: True, timeout: float = 25.0):
            """The next matching message since the boot (a firmware seen dying ends the wait)."""
            return cloud.expect(topic, pred, since=m, timeout=timeout, broken=trial.broken)

        await expect(f"{sh}/update", lambda d: "firmware_version" in d["state"]["reported"])
        await expect(f"{jobs}/start-next")
        await expect(f"dt/{thing}/env")
        await cloud.send(f"{jobs}/start-next/accepted", {"execution": {
            "jobId": "cfg1", "jobDocument": {"operation": "config", "settings": {"refresh": 2000}}}})
        await expect(f"{jobs}/cfg1/update", lambda d: d["status"] == "SUCCEEDED")
        if mode == "delta":
            filler = "x" * (DELTA_BYTES - 200)
            await cloud.send(f"{sh}/update/delta", {"version": 9, "timestamp": 1, "state": {
                "refresh": 3000, "on": True, "notes": filler}})
            await expect(f"{sh}/update", lambda d: d["state"].get("reported", {}).get("refresh") == 3000)
        if mode == "ota":
            from fleetdesk.fleet.otapkg import firmware_package, sha256_hex

            from fleetdesk.fleet.otapkg import build_package, firmware_files

            # a frozen board's OTA is a .mpy file set too (its slot goes first on sys.path)
            if FIRMWARE is not None:
                pkg = build_package(firmware_files("9.9.9", FIRMWARE, compiled=variant != "py"))
            else:
                pkg = firmware_package("9.9.9", compiled=variant != "py")
            self.files.files["/pkg-%s.bin" % variant] = pkg
            url = f"https://localhost:{self.files.port}/pkg-{variant}.bin"
            await cloud.send(f"{jobs}/start-next/accepted", {"execution": {"jobId": "ota1", "jobDocument": {
                "operation": "ota", "url": url, "sha256": sha256_hex(pkg), "version": "9.9.9"}}})
            d = await expect(f"{jobs}/ota1/update", lambda d: d["status"] in ("SUCCEEDED", "FAILED"), timeout=60)
            if d["status"] != "SUCCEEDED":
                raise RuntimeError("OTA job FAILED: %s" % d.get("statusDetails"))
            self.info[f"ota_package_{variant}"] = len(pkg)
        await cloud.send(f"{thing}/rpc", {"id": 1, "method": "Sys.GetInfo"})
        d = await expect(f"{thing}/rpc/resp", lambda d: d.get("id") == 1)
        self.info[(mode, variant)] = {k: v for k, v in d.get("result", {}).items() if k.startswith(("ram", "heap"))}

    async def smallest(self, mode: str, variant: str, lo: int, hi: int, log) -> tuple[int | None, str]:
        ok, why = await self.trial(mode, variant, hi)
        log(f"  {mode:<6} {variant:<3} {hi:>4} KB: {'ok' if ok else why}")
        if not ok:
            return None, why
        last_fail = why
        while hi - lo > STEP_KB:
            mid = (lo + hi) // 2 // STEP_KB * STEP_KB
            if mid <= lo:
                mid = lo + STEP_KB
            ok, why = await self.trial(mode, variant, mid)
            log(f"  {mode:<6} {variant:<3} {mid:>4} KB: {'ok' if ok else why}")
            if ok:
                hi = mid
            else:
                lo = mid
                last_fail = why
        return hi, last_fail


async def main_async(args) -> int:
    import aiomqtt
    from tlsbroker import start_broker

    tmp = Path(tempfile.mkdtemp(prefix="fd-heap-"))
    broker = start_broker(tmp / "broker")
    files = OtaFileServer(broker, tmp)
    creds = broker.ca.issue("bench-cloud")
    (tmp / "c.pem").write_bytes(creds.cert_pem)
    (tmp / "c.key").write_bytes(creds.key_pem)
    ctx = ssl.create_default_context(cafile=str(broker.ca_file))
    ctx.load_cert_chain(tmp / "c.pem", tmp / "c.key")
    results = {}
    log = (lambda s: print(s, file=sys.stderr, flush=True)) if not args.quiet else (lambda s: None)
    try:
        async with aiomqtt.Client("localhost", broker.port, identifier="bench-cloud", tls_context=ctx) as client:
            await client.subscribe("#", qos=1)
            await client.subscribe("$aws/#", qos=1)
            cloud = MessageLog(client)
            pump = asyncio.create_task(cloud.pump())
            bench = Bench(tmp, broker, cloud, files, args.chip)
            for mode in args.modes:
                for variant in args.variants:
                    kb, why = await bench.smallest(mode, variant, args.lo, args.hi, log)
                    results[(mode, variant)] = (kb, why)
            pump.cancel()
    finally:
        files.close()
        broker.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    report(results, bench.info, args)
    return 0


def report(results, info, args) -> None:
    chips = [c for c in HEAP_BUDGETS if c != "esp8266"] + ["esp8266"]
    if args.json:
        print(json.dumps({f"{m}/{v}": {"smallest_kb": kb, "unix_heapsize_kb": unix_heapsize(kb << 10) >> 10
                                        if kb else None, "first_failure": why}
                          for (m, v), (kb, why) in results.items()}))
        return
    binary = micropython_binary()
    print(f"Smallest working GC heap, chip-equivalent KB (unix port {binary}, x{word_inflation():g}); "
          f"headroom = budget free at the peak")
    head = f"{'mode':<7}{'var':<5}{'smallest':>9}{'unix -X':>9}" + "".join(
        f"{c + ' ' + str(HEAP_BUDGETS[c].heap >> 10) + 'K':>15}" for c in chips)
    print(head)
    for (mode, variant), (kb, why) in results.items():
        if kb is None:
            print(f"{mode:<7}{variant:<5}{'>' + str(args.hi):>9}  ({why})")
            continue
        row = f"{mode:<7}{variant:<5}{kb:>9}{unix_heapsize(kb << 10) >> 10:>9}"
        for c in chips:
            budget = HEAP_BUDGETS[c].heap >> 10
            free = 100.0 * (budget - kb) / budget
            row += f"{free:>+13.0f} %" if kb <= budget else f"{'no fit':>15}"
        print(row)
    goal = [f"{m}/{v}" for (m, v), (kb, _) in results.items()
            if kb is None or kb > HEAP_BUDGETS["esp32"].heap * 0.75 / 1024]
    print("goal (>= 25 % free on a stock ESP32):", "PASS" if not goal else "FAIL for " + ", ".join(goal))
    for k, v in info.items():
        if isinstance(k, tuple):
            print(f"Sys.GetInfo at the last working run, {k[0]}/{k[1]}: {v}")
        else:
            print(f"{k}: {v} bytes")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--modes", default=",".join(MODES))
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--chip", default="esp32")
    p.add_argument("--lo", type=int, default=16, help="a heap (KB) known to fail")
    p.add_argument("--hi", type=int, default=320, help="a heap (KB) expected to work")
    p.add_argument("--firmware", type=Path, help="firmware tree to measure (default: firmware/)")
    p.add_argument("--micropython", help="the unix port to run (default: the installed one); "
                   "a 32-bit build is measured unscaled; the frozen variant needs fd/ frozen in it")
    p.add_argument("--json", action="store_true")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args()
    global FIRMWARE
    FIRMWARE = args.firmware
    args.modes = [m for m in args.modes.split(",") if m]
    args.variants = [v for v in args.variants.split(",") if v]
    bad = [m for m in args.modes if m not in MODES] + [v for v in args.variants if v not in VARIANTS]
    if bad:
        p.error(f"unknown mode/variant {bad}; modes {MODES}, variants {VARIANTS}")
    if args.micropython:
        os.environ[MICROPYTHON_ENV] = os.path.abspath(args.micropython)
    if "frozen" in args.variants:
        why = check_frozen(micropython_binary())
        if why:
            p.error(why)
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
