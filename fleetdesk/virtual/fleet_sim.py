"""Virtual fleet: N sandbox things, each running the real firmware under CPython.

:func:`provision_fleet` creates the things in the sandbox (boto3, via
:func:`fleetdesk.cloud.identity.create_device_identity`) and a per-device filesystem
directory (``config.json``, ``certs/*.der``, ``settings.json``) under the state dir; it is
idempotent: a device whose files exist is reused. :class:`FleetRunner` spreads the devices
over a few worker processes (:mod:`fleetdesk.virtual.fleet_worker`), each running many firmware
instances on one asyncio loop — the same ``firmware/fd`` code a flashed board runs.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from fleetdesk.errors import CloudError, FleetdeskError
from fleetdesk.roles import module_command


@dataclass
class DeviceSpec:
    """One simulated board: its thing, filesystem root, MAC and sensor seed."""

    thing: str
    root: str
    mac: str
    dht_seed: int


def _ca_der(ca_pem: bytes) -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    return x509.load_pem_x509_certificate(ca_pem).public_bytes(serialization.Encoding.DER)


def _pem_cert_to_der(pem: str) -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    return x509.load_pem_x509_certificate(pem.encode()).public_bytes(serialization.Encoding.DER)


def _key_pem_to_der(pem: str) -> bytes:
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(pem.encode(), None)
    return key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def identity_by_csr(iot, thing: str, policy_name: str) -> tuple[bytes, bytes]:
    """Thing + EC P-256 key made here + CreateCertificateFromCsr + attachments.

    The private key never leaves this machine (as on a device that makes its own CSR), and it
    is ~10x faster than CreateKeysAndCertificate at fleet scale. Returns (cert DER, key DER).
    """
    from botocore.exceptions import ClientError
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    try:
        iot.describe_thing(thingName=thing)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
            raise
        iot.create_thing(thingName=thing, attributePayload={"attributes": {"simulated": "true"}})
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, thing)]))
           .sign(key, hashes.SHA256()))
    cert = iot.create_certificate_from_csr(
        certificateSigningRequest=csr.public_bytes(serialization.Encoding.PEM).decode(), setAsActive=True)
    iot.attach_policy(policyName=policy_name, target=cert["certificateArn"])
    iot.attach_thing_principal(thingName=thing, principal=cert["certificateArn"])
    key_der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return _pem_cert_to_der(cert["certificatePem"]), key_der


def device_mac(index: int) -> str:
    """A stable, locally administered MAC for simulated device `index`."""
    return "02fd%08x" % (index & 0xFFFFFFFF)


def provision_fleet(info, count: int, fleet_dir: Path, *, prefix: str = "sim", workers: int = 8,
                    progress: Callable[[int, int], None] | None = None) -> list[DeviceSpec]:
    """Create (or reuse) `count` things and their device directories.

    Args:
        info: a running sandbox's :class:`fleetdesk.sandbox.info.SandboxInfo`.
        count: number of devices (things ``<prefix>-0000`` ...).
        fleet_dir: where device directories live (``<fleet_dir>/<thing>/``).
        prefix: thing name prefix.
        workers: parallel boto3 calls.
        progress: called with (done, count) as devices become ready.

    Returns:
        The device specs, in index order.

    Raises:
        CloudError: the sandbox refused a step (message names the thing and the step).
    """
    import boto3

    from botocore.exceptions import BotoCoreError, ClientError

    from fleetdesk.cloud.identity import DEFAULT_POLICY_NAME, create_device_identity, ensure_policy
    from fleetdesk.paths import write_private

    if count < 1:
        raise FleetdeskError(f"--count must be at least 1, got {count}", "pass --count N with N >= 1")
    fleet_dir.mkdir(parents=True, exist_ok=True)
    ca_der = _ca_der(Path(info.ca_file).read_bytes())
    local = threading.local()
    use_csr = [True]
    try:
        ensure_policy(boto3.client("iot", **info.boto3_kwargs()), DEFAULT_POLICY_NAME)
    except (ClientError, BotoCoreError) as exc:
        raise CloudError(f"could not create the thing policy in the sandbox: {exc}",
                         "is the sandbox running? start it with `fleetdesk sandbox up`") from exc
    done = [0]
    lock = threading.Lock()

    def one(i: int) -> DeviceSpec:
        thing = f"{prefix}-{i:04d}"
        root = fleet_dir / thing
        spec = DeviceSpec(thing, str(root), device_mac(i), 1000 + i)
        cfg_file = root / "config.json"
        endpoint = {"thing_name": thing, "endpoint": info.mqtt_host, "port": info.mqtt_port,
                    "region": info.region}
        fresh = not ((root / "certs" / "key.der").exists() and cfg_file.exists())
        if fresh:
            if not hasattr(local, "iot"):
                local.iot = boto3.client("iot", **info.boto3_kwargs())
            cert_der = None
            if use_csr[0]:
                try:
                    cert_der, key_der = identity_by_csr(local.iot, thing, DEFAULT_POLICY_NAME)
                except ClientError as exc:
                    if "Csr" not in str(exc) and "CSR" not in str(exc):
                        raise CloudError(f"could not provision {thing}: {exc}", "check the sandbox log") from exc
                    use_csr[0] = False  # no CreateCertificateFromCsr: let the cloud make the key
            if cert_der is None:
                ident = create_device_identity(local.iot, thing, attributes={"simulated": "true"})
                cert_der = _pem_cert_to_der(ident.certificate_pem)
                key_der = _key_pem_to_der(ident.private_key_pem)
            (root / "certs").mkdir(parents=True, exist_ok=True)
            (root / "certs" / "cert.der").write_bytes(cert_der)
            write_private(root / "certs" / "key.der", key_der)
        (root / "certs").mkdir(parents=True, exist_ok=True)
        (root / "certs" / "ca.der").write_bytes(ca_der)
        cfg_file.write_text(json.dumps(endpoint))  # endpoint/port may change between sandbox runs
        with lock:
            done[0] += 1
            if progress:
                progress(done[0], count)
        return spec

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        try:
            return list(pool.map(one, range(count)))
        except CloudError:
            raise
        except Exception as exc:  # botocore connection errors etc.
            raise CloudError(f"provisioning the simulated fleet failed: {exc}",
                             "is the sandbox running? start it with `fleetdesk sandbox up`") from exc


@dataclass
class FleetStats:
    """Aggregated worker counters (latest line of every worker)."""

    workers: dict[int, dict] = field(default_factory=dict)

    def update(self, rec: dict) -> None:
        self.workers[int(rec["worker"])] = rec

    def total(self, key: str) -> int:
        return sum(int(w.get(key, 0)) for w in self.workers.values())

    def summary(self) -> dict:
        return {"devices": self.total("devices"), "online": self.total("online"), "sent": self.total("sent"),
                "boots": self.total("boots"), "read_errors": self.total("read_errors"),
                "dropped": self.total("dropped"), "rss_kb": self.total("rss_kb")}


class FleetRunner:
    """Runs device specs in `processes` worker processes until :meth:`stop`.

    Args:
        specs: the devices.
        rate: telemetry messages per second per device (None = the firmware's refresh setting).
        processes: worker processes (default: CPU count, at most 8, at most one per 10 devices).
        ramp: seconds over which devices connect (spreads TLS handshakes).
        log_dir: where worker stderr logs go.
        sensor_errors: probability of a failed DHT11 read (None = the hal default, 2%).
    """

    def __init__(self, specs: list[DeviceSpec], *, rate: float | None = None, processes: int | None = None,
                 ramp: float | None = None, log_dir: Path | None = None,
                 sensor_errors: float | None = None) -> None:
        if rate is not None and not 0 < rate <= 100:
            raise FleetdeskError(f"--rate {rate} is out of range", "use 0 < rate <= 100 messages/s per device")
        self.specs = specs
        self.rate = rate
        n = len(specs)
        self.processes = processes or max(1, min(os.cpu_count() or 1, 8, math.ceil(n / 10)))
        self.ramp = ramp if ramp is not None else min(10.0, n / 100)
        self.log_dir = log_dir
        self.sensor_errors = sensor_errors
        self.stats = FleetStats()
        self._procs: list[subprocess.Popen] = []
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        chunks = [self.specs[i::self.processes] for i in range(self.processes)]
        for wi, chunk in enumerate(chunks):
            if not chunk:
                continue
            job = {"worker": wi, "rate": self.rate, "ramp": self.ramp, "sensor_errors": self.sensor_errors,
                   "devices": [asdict(s) for s in chunk]}
            err = None
            if self.log_dir is not None:
                self.log_dir.mkdir(parents=True, exist_ok=True)
                err = open(self.log_dir / f"worker-{wi}.log", "wb")
            p = subprocess.Popen(module_command("fleetdesk.virtual.fleet_worker"), stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL if err is None else err,
                                 start_new_session=True)
            if err is not None:
                err.close()
            assert p.stdin is not None and p.stdout is not None  # both PIPE
            p.stdin.write(json.dumps(job).encode())
            p.stdin.close()
            self._procs.append(p)
            t = threading.Thread(target=self._read, args=(p,), daemon=True)
            t.start()
            self._threads.append(t)

    def _read(self, p: subprocess.Popen) -> None:
        assert p.stdout is not None  # PIPE
        for line in p.stdout:
            try:
                self.stats.update(json.loads(line))
            except (ValueError, KeyError):
                continue

    @property
    def alive(self) -> int:
        return sum(1 for p in self._procs if p.poll() is None)

    def wait_online(self, timeout: float) -> bool:
        """Wait until every device reported online at least once at the same time."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.stats.total("online") >= len(self.specs):
                return True
            if self.alive < len(self._procs):
                return False
            time.sleep(0.2)
        return False

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM the workers (they report final counters, then disconnect); kill stragglers."""
        import signal

        for p in self._procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for p in self._procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        for t in self._threads:
            t.join(10)

    def __enter__(self) -> FleetRunner:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
