"""The mosquitto child process: generated config, start/stop/restart, log -> connection events.

mosquitto logs to stdout; we read it in the sandbox process and turn the connection lines
into :class:`RawConnection` records for the authorizer (which enforces iot:Connect and
publishes accepted ones as ClientEvents).

Persistence is on: persistent sessions (clean start off, session expiry) and the QoS1
messages queued for them live in ``broker/mosquitto.db``, written when mosquitto exits
cleanly and autosaved every ~2 s (``autosave_interval 1``; mosquitto saves once the interval
has fully passed). A restart after SIGTERM loses nothing; after SIGKILL (or a crash) what the
broker accepted since its last autosave is gone, as on any broker without a write-ahead log.
"""

from __future__ import annotations

import asyncio
import glob
import os
import re
import shutil
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Awaitable, Callable

from fleetdesk.errors import SandboxError

INSTALL_HINT = (
    "install mosquitto: Debian/Ubuntu `sudo apt-get install mosquitto`, Fedora `sudo dnf install mosquitto`, "
    "macOS `brew install mosquitto`, Windows: the installer from mosquitto.org "
    "(or set FLEETDESK_MOSQUITTO to the mosquitto binary)"
)

_DYNSEC_CANDIDATES = (
    "/usr/lib/*/mosquitto_dynamic_security.so",
    "/usr/lib/mosquitto_dynamic_security.so",
    "/usr/lib64/mosquitto_dynamic_security.so",
    "/usr/local/lib/mosquitto_dynamic_security.so",
    "/usr/local/lib/*/mosquitto_dynamic_security.so",
    "/opt/homebrew/lib/mosquitto_dynamic_security.so",
    "/opt/homebrew/opt/mosquitto/lib/mosquitto_dynamic_security.so",
    "/usr/local/opt/mosquitto/lib/mosquitto_dynamic_security.so",
    r"C:\Program Files\mosquitto\mosquitto_dynamic_security.dll",
)

PERSISTENCE_FILE = "mosquitto.db"
AUTOSAVE_INTERVAL_S = 1
MAX_QUEUED_MESSAGES = 100_000
SESSION_EXPIRY_CAP = "1h"

_DB_UNREADABLE = re.compile(r"Unable to restore persistent database|Couldn't open database")

_CONNECTED = re.compile(
    r"New client connected from (?P<addr>\S+) as (?P<cid>.*?) \(p\d+, c\d+, k\d+(?:, u'(?P<user>.*)')?\)\.$"
)
_DISCONNECT_PATTERNS = (
    (re.compile(r"^Client (?P<cid>.*) already connected, closing old connection\.$"), "DUPLICATE_CLIENTID"),
    (re.compile(r"^Client (?P<cid>.*) has exceeded timeout, disconnecting\.$"), "MQTT_KEEP_ALIVE_TIMEOUT"),
    (re.compile(r"^Client (?P<cid>.*) closed its connection\.$"), "CONNECTION_LOST"),
    (re.compile(r"^Client (?P<cid>.*) disconnected, not authorised\.$"), "FORBIDDEN_ACCESS"),
    (re.compile(r"^Client (?P<cid>.*) disconnected due to protocol error\.$"), "CLIENT_ERROR"),
    (re.compile(r"^Client (?P<cid>.*) disconnected\.$"), "CLIENT_INITIATED_DISCONNECT"),
    (re.compile(r"^Client (?P<cid>.*) disconnected: .*$"), "CONNECTION_LOST"),
    (re.compile(r"^Socket error on client (?P<cid>.*), disconnecting\.$"), "CONNECTION_LOST"),
    (re.compile(r"^Client (?P<cid>.*) been disconnected by administrative action\.$"), "SERVER_INITIATED_DISCONNECT"),
)


@dataclass(frozen=True)
class RawConnection:
    """One connection line from mosquitto's log."""

    kind: str  # "connected" | "disconnected"
    client_id: str
    identity: str
    address: str
    reason: str
    ts_ms: int


def parse_log_line(line: str) -> RawConnection | None:
    """A connect/disconnect record from one mosquitto log line (None for other lines)."""
    line = line.strip()
    now = int(time.time() * 1000)
    m = _CONNECTED.search(line)
    if m:
        return RawConnection("connected", m["cid"], m["user"] or "", m["addr"], "", now)
    for pattern, reason in _DISCONNECT_PATTERNS:
        m = pattern.search(line)
        if m and m["cid"] != "<unknown>":
            return RawConnection("disconnected", m["cid"], "", "", reason, now)
    return None


def find_mosquitto() -> tuple[str, str]:
    """Paths of the mosquitto binary and its dynamic-security plugin.

    Raises:
        SandboxError: either is missing (with install instructions).
    """
    binary = os.environ.get("FLEETDESK_MOSQUITTO") or shutil.which("mosquitto")
    if not binary:
        for cand in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto", "/opt/homebrew/sbin/mosquitto",
                     r"C:\Program Files\mosquitto\mosquitto.exe"):
            if os.path.exists(cand):
                binary = cand
                break
    if not binary or not os.path.exists(binary):
        raise SandboxError("mosquitto (the MQTT broker the sandbox runs) is not installed", INSTALL_HINT)
    plugin = os.environ.get("FLEETDESK_MOSQUITTO_DYNSEC")
    if not plugin:
        near = Path(binary).resolve().parent
        cands = [str(near / "mosquitto_dynamic_security.so"), str(near / "mosquitto_dynamic_security.dll"),
                 str(near.parent / "lib" / "mosquitto_dynamic_security.so")]
        for pat in cands + list(_DYNSEC_CANDIDATES):
            hits = sorted(glob.glob(pat))
            if hits:
                plugin = hits[0]
                break
    if not plugin or not os.path.exists(plugin):
        raise SandboxError(
            "mosquitto's dynamic-security plugin (mosquitto_dynamic_security) was not found",
            "it ships with mosquitto >= 2.0; " + INSTALL_HINT + "; or set FLEETDESK_MOSQUITTO_DYNSEC to its path",
        )
    return binary, plugin


def broker_user() -> str:
    """The account mosquitto should keep running as: the one starting it (by uid, not $USER).

    mosquitto started as root drops to the `mosquitto` account unless told otherwise, and that
    account cannot read our 0600 keys; $USER may be unset or another name (sudo, su, CI).
    """
    if not hasattr(os, "geteuid"):
        return ""
    import pwd

    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:  # a uid with no passwd entry (some containers): mosquitto keeps it when not root
        return ""


def die_with_parent() -> None:
    """preexec_fn (Linux): SIGTERM this child when its parent dies, so no orphan keeps ports."""
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass


def _conf_path(p: Path) -> str:
    return str(p).replace("\\", "/")


@dataclass
class BrokerConfig:
    """Inputs of the generated mosquitto.conf."""

    directory: Path
    mqtt_port: int
    ws_port: int
    internal_port: int
    ca_file: Path
    cert_file: Path
    key_file: Path
    crl_file: Path
    dynsec_file: Path
    bind: str = "127.0.0.1"
    device_listener: bool = True  # False: the mTLS front (mtls_front.py) owns the device port

    @property
    def ports(self) -> tuple[int, ...]:
        """The ports mosquitto itself opens."""
        return (self.internal_port, self.mqtt_port) if self.device_listener else (self.internal_port,)

    def render(self, plugin: str) -> str:
        user = broker_user()
        lines = [
            "# generated by fleetdesk sandbox; rewritten at every start",
            "per_listener_settings false",
            "allow_anonymous false",
            # Persistent sessions and their queued QoS1 messages survive a broker restart
            # (issue 9: no telemetry lost). Written on exit (SIGTERM) and every
            # ~AUTOSAVE_INTERVAL_S while running: a SIGKILL loses what arrived since the last save.
            "persistence true",
            f"persistence_location {_conf_path(self.directory)}/",
            f"persistence_file {PERSISTENCE_FILE}",
            f"autosave_interval {AUTOSAVE_INTERVAL_S}",
            f"max_queued_messages {MAX_QUEUED_MESSAGES}",  # per offline session (the app's, during a backlog)
            f"persistent_client_expiration {SESSION_EXPIRY_CAP}",  # AWS: persistent sessions expire after 1 h
            "log_dest stderr",  # unbuffered (stdout into a pipe is block-buffered by stdio)
            "log_type error", "log_type warning", "log_type notice", "log_type information",
            "connection_messages true",
            "log_timestamp false",
            "max_keepalive 1200",
            "max_packet_size 149504",
            "max_inflight_messages 100",
            "set_tcp_nodelay true",  # no Nagle: small replies (PUBACK then PUBLISH) would wait ~40 ms for delayed ACKs
            f"plugin {_conf_path(Path(plugin))}",
            f"plugin_opt_config_file {_conf_path(self.dynsec_file)}",
        ]
        if user:
            lines.insert(2, f"user {user}")
        device = [
            "",
            f"listener {self.mqtt_port} {self.bind}",
            f"cafile {_conf_path(self.ca_file)}",
            f"certfile {_conf_path(self.cert_file)}",
            f"keyfile {_conf_path(self.key_file)}",
            f"crlfile {_conf_path(self.crl_file)}",
            "require_certificate true",
            "use_identity_as_username true",
            "tls_version tlsv1.2",
            "max_qos 1",  # AWS IoT's CONNACK: maximum QoS 1, topic alias maximum 8
            "max_topic_alias 8",
        ]
        lines += (device if self.device_listener else []) + [
            "",
            # No mosquitto websockets listener: libwebsockets binds every interface whatever
            # the listener line says; MQTT over WSS is the SigV4-checking front (wss.py),
            # bridged to the internal listener below.
            f"listener {self.internal_port} 127.0.0.1",
            # devices reach it through the mTLS front: it negotiates what the device port did
            *([] if self.device_listener else ["max_qos 1", "max_topic_alias 8"]),
            "",
        ]
        return "\n".join(lines)


class Broker:
    """Runs mosquitto; restarts it if it dies.

    Args:
        config: what to put in mosquitto.conf.
        on_connection: awaited with each :class:`RawConnection` parsed from the log.
        before_start: awaited before each (re)start (writes the dynamic-security file).
        on_restart: awaited after an unexpected exit was followed by a successful restart.
        echo: where to print lines about restarts (stderr by default).
    """

    def __init__(self, config: BrokerConfig, *, on_connection: Callable[[RawConnection], Awaitable[None]],
                 before_start: Callable[[], Awaitable[None]], on_restart: Callable[[], Awaitable[None]] | None = None,
                 echo: Callable[[str], None] | None = None) -> None:
        self.config = config
        self.binary, self.plugin = find_mosquitto()
        self.on_connection = on_connection
        self.before_start = before_start
        self.on_restart = on_restart
        self.echo = echo or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self.proc: asyncio.subprocess.Process | None = None
        self.restarts = 0
        self._stopping = False
        self._reader: asyncio.Task | None = None
        self._watchdog: asyncio.Task | None = None
        self._tail: list[str] = []

    @property
    def conf_file(self) -> Path:
        return self.config.directory / "mosquitto.conf"

    async def start(self, timeout: float = 15.0) -> None:
        """Start mosquitto and wait until its listeners accept connections."""
        await self._spawn(timeout)
        self._watchdog = asyncio.create_task(self._watch())

    @property
    def persistence_file(self) -> Path:
        """mosquitto's session database (persistent sessions, queued QoS1 messages, retained)."""
        return self.config.directory / PERSISTENCE_FILE

    async def _spawn(self, timeout: float) -> None:
        try:
            await self._spawn_once(timeout)
        except SandboxError:
            if not (_DB_UNREADABLE.search(self._tail_text()) and self.persistence_file.exists()):
                raise
            # Never deleted: kept beside for inspection; the registry (the real state) is intact.
            aside = self.persistence_file.with_name(f"{PERSISTENCE_FILE}.unreadable-{int(time.time())}")
            self.persistence_file.replace(aside)
            self.echo(f"sandbox: mosquitto could not read its session database ({self._tail_text()}); "
                      f"moved it to {aside} and started without the saved MQTT sessions")
            await self._spawn_once(timeout)

    async def _spawn_once(self, timeout: float) -> None:
        self.config.directory.mkdir(parents=True, exist_ok=True)
        await self.before_start()
        self.conf_file.write_text(self.config.render(self.plugin))
        self._tail = []
        self.proc = await asyncio.create_subprocess_exec(
            self.binary, "-c", str(self.conf_file),
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            preexec_fn=die_with_parent if sys.platform.startswith("linux") else None,
        )
        (self.config.directory / "mosquitto.pid").write_text(f"{self.proc.pid}\n")
        self._reader = asyncio.create_task(self._read(self.proc))
        deadline = time.monotonic() + timeout
        ports = self.config.ports
        while True:
            if self.proc.returncode is not None:
                try:  # its last words (the reader ends at EOF)
                    await asyncio.wait_for(asyncio.shield(self._reader), 2.0)
                except (asyncio.TimeoutError, Exception):  # noqa: BLE001 - the message is best effort
                    pass
                raise SandboxError(self._failure_message(), self._failure_advice())
            if all([await _port_open(p) for p in ports]):
                return
            if time.monotonic() > deadline:
                await self.stop()
                raise SandboxError(f"mosquitto did not open its ports within {timeout:.0f} s", self._tail_text())
            await asyncio.sleep(0.05)

    def _tail_text(self) -> str:
        return " | ".join(self._tail[-5:]) or "no output"

    def _failure_message(self) -> str:
        text = self._tail_text()
        if "Address already in use" in text:
            return f"a sandbox port is already in use (mosquitto: {text})"
        return f"mosquitto exited with code {self.proc.returncode if self.proc else '?'}: {text}"

    def _failure_advice(self) -> str:
        return "choose other ports with --port-base N" if "Address already in use" in self._tail_text() \
            else "see mosquitto's message above; " + INSTALL_HINT

    async def _read(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        while True:
            raw = await proc.stdout.readline()
            if not raw:
                return
            line = raw.decode("utf-8", "replace").rstrip()
            self._tail = (self._tail + [line])[-20:]
            if os.environ.get("FLEETDESK_SANDBOX_BROKER_LOG"):
                print(f"mosquitto: {line}", file=sys.stderr, flush=True)
            rec = parse_log_line(line)
            if rec is not None:
                try:
                    await self.on_connection(rec)
                except Exception as exc:  # noqa: BLE001 - keep reading the log
                    self.echo(f"sandbox: connection handler failed: {exc!r}")

    async def _watch(self) -> None:
        while not self._stopping:
            proc = self.proc
            assert proc is not None
            code = await proc.wait()
            if self._reader:
                await asyncio.gather(self._reader, return_exceptions=True)
            if self._stopping:
                return
            self.echo(f"sandbox: mosquitto exited unexpectedly (code {code}: {self._tail_text()}); restarting it")
            delay = 0.2
            while not self._stopping:
                try:
                    await self._spawn(15.0)
                    break
                except SandboxError as exc:
                    self.echo(f"sandbox: mosquitto restart failed: {exc}; retrying in {delay:.1f} s")
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)
            if self._stopping:
                return
            self.restarts += 1
            self.echo("sandbox: mosquitto restarted")
            if self.on_restart:
                await self.on_restart()

    def reload(self) -> None:
        """SIGHUP: mosquitto re-reads its config, including the CRL."""
        if self.proc and self.proc.returncode is None and hasattr(signal, "SIGHUP"):
            self.proc.send_signal(signal.SIGHUP)

    async def stop(self) -> None:
        """Stop mosquitto (SIGTERM, then SIGKILL after 5 s)."""
        self._stopping = True
        proc = self.proc
        if proc and proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 5)
            except asyncio.TimeoutError:
                proc.kill()
                await proc.wait()
        for task in (self._watchdog, self._reader):
            if task and not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)


async def _port_open(port: int) -> bool:
    try:
        _r, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 1.0)
    except (OSError, asyncio.TimeoutError):
        return False
    w.close()
    try:
        await w.wait_closed()
    except OSError:
        pass
    return True
