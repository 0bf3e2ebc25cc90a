"""Shared test setup. Area fixtures live in tests/<area>/conftest.py.

Every test gets private app dirs (FLEETDESK_DATA_DIR, FLEETDESK_CONFIG_DIR) so nothing
touches the developer's real profiles, production DB or sandbox state.
"""

from __future__ import annotations

import os
import sys

import pytest

if not os.environ.get("DISPLAY") and sys.platform.startswith("linux"):
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


@pytest.fixture(autouse=True)
def _private_app_dirs(tmp_path_factory, monkeypatch):
    base = tmp_path_factory.mktemp("appdirs")
    monkeypatch.setenv("FLEETDESK_DATA_DIR", str(base / "data"))
    monkeypatch.setenv("FLEETDESK_CONFIG_DIR", str(base / "config"))
    monkeypatch.setenv("FLEETDESK_SANDBOX_DIR", str(base / "sandbox"))
    yield


def start_sandbox_process(state_dir, *, port_base: int = 0, timeout: float = 60.0, log_path=None):
    """Start `fleetdesk sandbox up --json` as a child; returns (Popen, SandboxInfo).

    The caller must stop it with :func:`stop_sandbox_process`.
    """
    import json
    import queue
    import subprocess
    import threading
    from pathlib import Path

    from fleetdesk.sandbox.info import SandboxInfo

    state_dir = Path(state_dir)
    log_path = Path(log_path or state_dir.parent / (state_dir.name + ".log"))
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "fleetdesk.sandbox", "up", "--json", "--state-dir", str(state_dir),
         "--port-base", str(port_base)],
        stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL,
    )
    log.close()
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: lines.put(proc.stdout.readline()), daemon=True).start()
    try:
        line = lines.get(timeout=timeout)
        json.loads(line)
    except Exception:  # noqa: BLE001
        stop_sandbox_process(proc)
        raise RuntimeError(f"sandbox did not start: {log_path.read_text(errors='replace')[-2000:]}") from None
    info = SandboxInfo.load(state_dir)
    if info is None:
        stop_sandbox_process(proc)
        raise RuntimeError(f"sandbox started but {state_dir}/endpoint.json is unusable")
    return proc, info


def stop_sandbox_process(proc) -> None:
    """SIGTERM the sandbox, SIGKILL after 10 s."""
    import subprocess

    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    if proc.stdout:
        proc.stdout.close()


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory):
    """A running sandbox (SandboxInfo) shared by the whole test session; stopped at the end."""
    state_dir = tmp_path_factory.mktemp("sandbox-session") / "state"
    proc, info = start_sandbox_process(state_dir)
    try:
        yield info
    finally:
        stop_sandbox_process(proc)
