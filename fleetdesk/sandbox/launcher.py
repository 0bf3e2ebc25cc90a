"""Start the local sandbox as a child process, or attach to one already running.

The GUI (and anything else that needs "a sandbox, now") uses :class:`SandboxLauncher`:

* if ``<state_dir>/endpoint.json`` names a live process whose MQTT port answers, the
  launcher *attaches*: it uses that sandbox and never stops it;
* otherwise it runs ``fleetdesk sandbox up --json --state-dir D`` as a child, waits for
  the one JSON line that says the sandbox is ready, and stops the child in :meth:`stop`.

Everything is asyncio, no Qt. State changes are reported through ``on_state(state)``
with a :class:`LauncherState` (``starting`` / ``running`` / ``failed`` / ``stopped``).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fleetdesk.errors import SandboxError
from fleetdesk.process import pid_alive

READY_KEYS = ("mqtt_host", "mqtt_port", "http_endpoint", "ca_file")
DEFAULT_READY_TIMEOUT = 90.0
DEFAULT_STOP_TIMEOUT = 10.0


@dataclass(frozen=True)
class LauncherState:
    """What the launcher is doing right now.

    Attributes:
        phase: "stopped", "starting", "running" or "failed".
        endpoint: the ready JSON (mqtt_host, mqtt_port, ws_port, http_endpoint, ca_file,
            region, ...) while running, else empty.
        reason: why it failed (one line), or a note such as "attached".
        attached: True when the sandbox was already running and is not ours to stop.
    """

    phase: str = "stopped"
    endpoint: dict = field(default_factory=dict)
    reason: str = ""
    attached: bool = False

    def describe(self) -> str:
        """One line for a status bar: ``running, mqtt 127.0.0.1:8883`` etc."""
        if self.phase == "running":
            host = self.endpoint.get("mqtt_host", "?")
            port = self.endpoint.get("mqtt_port", "?")
            extra = " (attached)" if self.attached else ""
            return f"running, mqtt {host}:{port}{extra}"
        if self.phase == "failed":
            return f"failed: {self.reason}" if self.reason else "failed"
        return self.phase


def _parent_death_signal():
    """Linux: a ``preexec_fn`` that makes the child get SIGTERM when the app dies (even by
    SIGKILL or a crash), so a sandbox we started never outlives us. None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)  # loaded here: the child only makes one call
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None

    def preexec() -> None:
        prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG

    return preexec


def default_command() -> list[str]:
    """How to run the CLI from this install (a venv, a clean checkout or the standalone app)."""
    from fleetdesk.roles import module_command

    return module_command("fleetdesk")


async def port_answers(host: str, port: int, timeout: float = 1.0) -> bool:
    """True if a TCP connect to host:port succeeds within ``timeout`` seconds."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), timeout)
    except (OSError, asyncio.TimeoutError, ValueError):
        return False
    writer.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()
    return True


async def find_running(state_dir: Path) -> dict | None:
    """The endpoint of a sandbox already running for ``state_dir``, or None.

    Running means: endpoint.json parses, its pid is alive and its MQTT port answers.
    """
    path = Path(state_dir) / "endpoint.json"
    try:
        data = json.loads(path.read_text())
        pid = int(data.get("pid", 0))
        host, port = data["mqtt_host"], int(data["mqtt_port"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not pid_alive(pid):
        return None
    if not await port_answers(host, port):
        return None
    return data


class SandboxLauncher:
    """Owns (or borrows) one sandbox for a state dir.

    Args:
        state_dir: the sandbox state dir (``--state-dir``).
        port_base: passed as ``--port-base`` when given.
        command: the CLI prefix to run (default: this interpreter's ``-m fleetdesk``).
        on_state: called with a :class:`LauncherState` on every change (on the loop thread).
        ready_timeout: seconds to wait for the ready line before giving up.
        env: environment for the child (default: inherited).
    """

    def __init__(
        self,
        state_dir: str | os.PathLike,
        *,
        port_base: int | None = None,
        command: Sequence[str] | None = None,
        on_state: Callable[[LauncherState], None] | None = None,
        ready_timeout: float = DEFAULT_READY_TIMEOUT,
        env: dict[str, str] | None = None,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.port_base = port_base
        self.command = list(command) if command else default_command()
        self.on_state = on_state
        self.ready_timeout = ready_timeout
        self.env = env
        self.state = LauncherState()
        self._proc: asyncio.subprocess.Process | None = None
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=20)
        self._tasks: list[asyncio.Task] = []
        self._stopping = False

    # -- public -------------------------------------------------------------------------
    @property
    def owned(self) -> bool:
        """True when this launcher started the child (and will stop it)."""
        return self._proc is not None

    @property
    def pid(self) -> int | None:
        """The child's pid (None when attached or not started)."""
        return self._proc.pid if self._proc else None

    async def start(self) -> LauncherState:
        """Attach to a running sandbox or start one; returns the resulting state.

        Never raises for a sandbox that fails to start: the state says ``failed`` with
        the reason (the last line the child printed to stderr, or a timeout).
        """
        if self.state.phase in ("starting", "running"):
            return self.state
        self._stopping = False
        self._set(LauncherState("starting"))
        existing = await find_running(self.state_dir)
        if existing is not None:
            self._set(LauncherState("running", existing, "attached", attached=True))
            return self.state
        try:
            endpoint = await self._spawn_and_wait()
        except SandboxError as exc:
            await self._kill_child()
            self._set(LauncherState("failed", reason=exc.message))
            return self.state
        self._set(LauncherState("running", endpoint))
        self._tasks.append(asyncio.ensure_future(self._watch_exit()))
        return self.state

    async def stop(self, timeout: float = DEFAULT_STOP_TIMEOUT) -> None:
        """Stop the child we started (SIGTERM, then SIGKILL after ``timeout``).

        An attached sandbox is left running. Safe to call more than once.
        """
        self._stopping = True
        await self._kill_child(timeout)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        if self.state.phase != "stopped":
            self._set(LauncherState("stopped"))

    # -- internals ----------------------------------------------------------------------
    def _set(self, state: LauncherState) -> None:
        self.state = state
        if self.on_state is not None:
            self.on_state(state)

    def _argv(self) -> list[str]:
        argv = [*self.command, "sandbox", "up", "--json", "--state-dir", str(self.state_dir)]
        if self.port_base is not None:
            argv += ["--port-base", str(self.port_base)]
        return argv

    async def _spawn_and_wait(self) -> dict:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *self._argv(),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=self.env,
                preexec_fn=_parent_death_signal(),
            )
        except OSError as exc:
            raise SandboxError(f"cannot run {self.command[0]}: {exc}") from exc
        proc = self._proc
        assert proc.stdout is not None and proc.stderr is not None  # both PIPE
        self._tasks.append(asyncio.ensure_future(self._drain_stderr(proc.stderr)))
        try:
            endpoint = await asyncio.wait_for(self._read_ready(proc, proc.stdout), self.ready_timeout)
        except asyncio.TimeoutError as exc:
            raise SandboxError(f"sandbox not ready after {self.ready_timeout:.0f} s{self._tail_hint()}") from exc
        self._tasks.append(asyncio.ensure_future(self._drain(proc.stdout)))
        return endpoint

    async def _read_ready(self, proc: asyncio.subprocess.Process, stream: asyncio.StreamReader) -> dict:
        while True:
            line = await stream.readline()
            if not line:
                code = await proc.wait()
                await asyncio.sleep(0.05)  # let the stderr drain catch the last words
                raise SandboxError(f"sandbox exited with code {code}{self._tail_hint()}")
            text = line.decode(errors="replace").strip()
            if not text.startswith("{"):
                continue
            try:
                data = json.loads(text)
            except ValueError:
                continue
            if isinstance(data, dict) and all(k in data for k in READY_KEYS):
                return data

    def _tail_hint(self) -> str:
        """": <the child's last error>" (a FleetdeskError's message and its "-> advice" line)."""
        lines = [ln.strip() for ln in self._stderr_tail if ln.strip()]
        if not lines:
            return ""
        last = lines[-1]
        if last.startswith("->") and len(lines) > 1:
            last = f"{lines[-2]} {last}"
        if last.startswith("fleetdesk: "):
            last = last[len("fleetdesk: "):]
        return f": {last}"

    async def _drain_stderr(self, stream: asyncio.StreamReader) -> None:
        while True:
            line = await stream.readline()
            if not line:
                return
            self._stderr_tail.append(line.decode(errors="replace"))

    @staticmethod
    async def _drain(stream: asyncio.StreamReader) -> None:
        while await stream.read(65536):
            pass

    async def _watch_exit(self) -> None:
        proc = self._proc
        if proc is None:
            return
        code = await proc.wait()
        if self._stopping:
            return
        await asyncio.sleep(0.05)
        self._proc = None
        self._set(LauncherState("failed", reason=f"sandbox exited with code {code}{self._tail_hint()}"))

    async def _kill_child(self, timeout: float = DEFAULT_STOP_TIMEOUT) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), timeout)
        except asyncio.TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
