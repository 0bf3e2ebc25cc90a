"""Run a sandbox as a child process (tests, benches, scripts): start, wait for ready, stop."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
from pathlib import Path

from fleetdesk.errors import SandboxError
from fleetdesk.roles import module_command
from fleetdesk.sandbox.broker import die_with_parent
from fleetdesk.sandbox.info import SandboxInfo


def start_sandbox(state_dir: str | Path, *, port_base: int = 0, timeout: float = 60.0,
                  log_path: str | Path | None = None, env: dict | None = None,
                  extra_args: list[str] | None = None) -> tuple[subprocess.Popen, SandboxInfo]:
    """Start `python -m fleetdesk.sandbox up --json` and wait for its ready line.

    Args:
        state_dir: the sandbox state dir (created if missing).
        port_base: first port (0 = free ports).
        timeout: seconds to wait for the ready line.
        log_path: where the child's stderr goes (default ``<state_dir>.log`` beside it).
        env: environment for the child (default: inherited).
        extra_args: more `sandbox up` options (e.g. ["--host", "192.168.1.20"]).

    Returns:
        (the process, its :class:`SandboxInfo`). Stop it with :func:`stop_sandbox`.

    Raises:
        SandboxError: it exited or did not get ready in time (with the end of its log).
    """
    state_dir = Path(state_dir)
    log_path = Path(log_path or state_dir.parent / (state_dir.name + ".log"))
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            module_command("fleetdesk.sandbox", "up", "--json", "--state-dir", str(state_dir),
             "--port-base", str(port_base), *(extra_args or [])),
            stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL, env=env,
            preexec_fn=die_with_parent if sys.platform.startswith("linux") else None,
        )
    lines: queue.Queue = queue.Queue()
    stdout = proc.stdout
    assert stdout is not None  # stdout=PIPE
    threading.Thread(target=lambda: lines.put(stdout.readline()), daemon=True).start()
    try:
        json.loads(lines.get(timeout=timeout))
        info = SandboxInfo.load(state_dir)
        if info is None:
            raise ValueError("endpoint.json is unusable")
    except (queue.Empty, ValueError) as exc:
        stop_sandbox(proc)
        tail = log_path.read_text(errors="replace")[-2000:]
        raise SandboxError(f"the sandbox did not start ({exc or 'timeout'}): {tail}",
                           f"see {log_path}") from None
    return proc, info


def stop_sandbox(proc: subprocess.Popen, timeout: float = 10.0) -> int:
    """SIGTERM the sandbox (SIGKILL after ``timeout`` s); returns its exit code."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    if proc.stdout:
        proc.stdout.close()
    return proc.returncode
