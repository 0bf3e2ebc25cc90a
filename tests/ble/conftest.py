"""BLE test fixtures: virtual peripherals running the firmware's Config mode, and certs."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from ble_board import Console, ble_registry, fresh_board  # noqa: F401  (fixtures shared with tests/gui)
from ble_testlib import DEVICE_MAIN, INTERPRETERS, NETS, POP

from fleetdesk.paths import FIRMWARE_DIR


@dataclass
class VirtualPeripheral:
    """A firmware Config-mode process with the `bluetooth` shim."""

    proc: subprocess.Popen
    fs: Path
    address: str
    name: str
    registry: Path
    log: Path
    _out: str = field(default="")

    def config(self) -> dict:
        return json.loads((self.fs / "config.json").read_text())

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_exit(self, timeout: float = 15.0) -> int:
        return self.proc.wait(timeout)

    def alive(self) -> bool:
        return self.proc.poll() is None


def _ble_addr(mac: str) -> str:
    raw = bytearray(bytes.fromhex(mac))
    raw[5] = (raw[5] + 2) & 0xFF
    return ":".join(f"{b:02X}" for b in raw)


@pytest.fixture
def start_device(ble_registry, tmp_path):
    """Factory: start_device(interpreter="micropython", pop=POP, mac=..., config={}) -> VirtualPeripheral."""
    started: list[VirtualPeripheral] = []

    def start(interpreter: str = "micropython", pop: str | None = POP, mac: str = "240ac4a1b2c3",
              config: dict | None = None, nets: dict | None = None) -> VirtualPeripheral:
        fs = tmp_path / f"fs{len(started)}"
        fs.mkdir()
        cfg = dict(config or {})
        if pop is not None:
            cfg["pop"] = pop
        (fs / "config.json").write_text(json.dumps(cfg))
        env = dict(os.environ, FD_MAC=mac, FD_WIFI_NETWORKS=json.dumps(nets or NETS))
        log = tmp_path / f"device{len(started)}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen([INTERPRETERS[interpreter], str(DEVICE_MAIN), str(fs)], stdout=out,
                                    stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
        address = _ble_addr(mac)
        dev = VirtualPeripheral(proc, fs, address, "FD-" + mac[-6:].upper(), ble_registry, log)
        started.append(dev)
        entry = ble_registry / (bytes.fromhex(address.replace(":", "")).hex() + ".json")
        deadline = time.monotonic() + 20
        while not entry.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"virtual peripheral did not advertise:\n{dev.output()}")
            time.sleep(0.05)
        return dev

    yield start
    for dev in started:
        if dev.proc.poll() is None:
            dev.proc.kill()
        dev.proc.wait(10)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


@dataclass
class CertSet:
    ca: bytes
    cert: bytes
    key: bytes
    other_key: bytes
    expired_cert: bytes


@pytest.fixture(scope="session")
def certs() -> CertSet:
    """A CA, a device cert+key it signed (RSA, as AWS issues), a foreign key, an expired cert."""
    now = dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name("Test CA")).issuer_name(_name("Test CA"))
          .public_key(ca_key.public_key()).serial_number(1).not_valid_before(now - dt.timedelta(days=1))
          .not_valid_after(now + dt.timedelta(days=3650))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(ca_key, hashes.SHA256()))
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def leaf(days_from: int, days_to: int) -> bytes:
        c = (x509.CertificateBuilder().subject_name(_name("thing")).issuer_name(ca.subject)
             .public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now + dt.timedelta(days=days_from)).not_valid_after(now + dt.timedelta(days=days_to))
             .sign(ca_key, hashes.SHA256()))
        return c.public_bytes(serialization.Encoding.PEM)

    pem = serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return CertSet(ca.public_bytes(serialization.Encoding.PEM), leaf(-1, 365), key.private_bytes(*pem),
                   other.private_bytes(*pem), leaf(-400, -2))


@dataclass
class BlueZoo:
    """A private D-Bus with BlueZoo: hci0 = the laptop (central), hci1 = the board's radio."""

    address: str
    central: str = "hci0"
    board_adapter: str = "hci1"


def _has_owner(address: str, name: str) -> bool:
    import asyncio

    from dbus_fast import Message
    from dbus_fast.aio import MessageBus

    async def check() -> bool:
        bus = await MessageBus(bus_address=address).connect()
        try:
            reply = await bus.call(Message(destination="org.freedesktop.DBus", path="/org/freedesktop/DBus",
                                           interface="org.freedesktop.DBus", member="NameHasOwner",
                                           signature="s", body=[name]))
            return bool(reply.body and reply.body[0])
        finally:
            bus.disconnect()

    return asyncio.run(check())


@pytest.fixture
def bluezoo(tmp_path, monkeypatch):
    """Fresh fake BlueZ per test (bleak's real BlueZ backend talks to it via DBUS_SYSTEM_BUS_ADDRESS)."""
    import shutil
    import signal

    # In CI a missing dbus-daemon or BlueZoo is a failure, not a skip: ./run test installs both, and a
    # green run must have driven bleak's real BlueZ backend. On a developer's Mac they skip.
    missing = None
    if not sys.platform.startswith("linux") or not shutil.which("dbus-daemon"):
        missing = "BlueZoo needs Linux and dbus-daemon (Debian: apt-get install dbus)"
    bluezoo_bin = Path(sys.executable).with_name("bluezoo")
    if missing is None and not bluezoo_bin.exists():
        missing = "bluezoo (test-only, GPL) is not installed: pip install -e '.[dev]'"
    if missing:
        if os.environ.get("CI") and sys.platform.startswith("linux"):
            pytest.fail(missing + " (CI must run the BlueZ tests)")
        pytest.skip(missing)
    bus_dir = tmp_path / "dbus"
    bus_dir.mkdir()
    daemon = subprocess.Popen(["dbus-daemon", "--session", "--nofork", "--print-address=1",
                               f"--address=unix:tmpdir={bus_dir}"], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True)
    procs = [daemon]
    try:
        address = daemon.stdout.readline().strip()
        assert address.startswith("unix:"), "dbus-daemon did not start"
        env = dict(os.environ, DBUS_SESSION_BUS_ADDRESS=address, DBUS_SYSTEM_BUS_ADDRESS=address)
        zoo = subprocess.Popen([str(bluezoo_bin), "--bus-session", "--auto-enable", "--scan-interval", "1",
                                "-a", "00:00:00:01:00:00", "-a", "24:0A:C4:A1:B2:C5"], env=env,
                               stdout=subprocess.DEVNULL, stderr=(tmp_path / "bluezoo.log").open("wb"))
        procs.append(zoo)
        deadline = time.monotonic() + 20
        while not _has_owner(address, "org.bluez"):  # wait until BlueZoo owns org.bluez
            assert zoo.poll() is None and time.monotonic() < deadline, "BlueZoo did not start"
            time.sleep(0.1)
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", address)
        yield BlueZoo(address)
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(5)
