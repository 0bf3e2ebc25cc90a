"""fleetdesk.sandbox.launcher: start a sandbox child, attach to a running one, stop ours only.

These use tests/gui/stub_sandbox.py (same CLI contract, no broker) so the launcher's own
logic is checked fast; test_app_sandbox.py runs the real sandbox.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest
from netutil import dead_pid, refused_port

from fleetdesk.sandbox.launcher import SandboxLauncher, find_running, pid_alive

STUB = [sys.executable, str(Path(__file__).with_name("stub_sandbox.py"))]
pytestmark = pytest.mark.timeout(60)


def launcher(state_dir, mode="ok", **kw):
    states = []
    env = {**os.environ, "STUB_MODE": mode}
    ln = SandboxLauncher(state_dir, command=STUB, on_state=states.append, env=env, **kw)
    return ln, states


async def test_start_reports_starting_then_running_and_stop_kills_child(tmp_path):
    ln, states = launcher(tmp_path)
    state = await ln.start()
    try:
        assert [s.phase for s in states] == ["starting", "running"]
        assert state.endpoint["mqtt_host"] == "127.0.0.1"
        assert state.describe() == f"running, mqtt 127.0.0.1:{state.endpoint['mqtt_port']}"
        assert ln.owned and pid_alive(ln.pid)
        pid = ln.pid
    finally:
        await ln.stop()
    assert not pid_alive(pid)
    assert states[-1].phase == "stopped"


async def test_second_launcher_attaches_and_does_not_stop_the_owner(tmp_path):
    first, _ = launcher(tmp_path)
    await first.start()
    try:
        second, states = launcher(tmp_path)
        state = await second.start()
        assert state.phase == "running" and state.attached
        assert "attached" in state.describe()
        assert state.endpoint["mqtt_port"] == first.state.endpoint["mqtt_port"]
        assert not second.owned
        await second.stop()
        assert pid_alive(first.pid), "stopping an attached launcher killed the owner's sandbox"
        assert await find_running(tmp_path) is not None
    finally:
        await first.stop()
    assert await find_running(tmp_path) is None


async def test_stale_endpoint_file_is_not_attached(tmp_path):
    (tmp_path / "endpoint.json").write_text(
        json.dumps({"pid": dead_pid(), "mqtt_host": "127.0.0.1", "mqtt_port": refused_port(), "state_dir": str(tmp_path)})
    )
    assert await find_running(tmp_path) is None
    ln, _ = launcher(tmp_path)
    state = await ln.start()
    try:
        assert state.phase == "running" and not state.attached and ln.owned
    finally:
        await ln.stop()


async def test_failure_reason_is_the_childs_last_error_line(tmp_path):
    ln, states = launcher(tmp_path, mode="fail")
    state = await ln.start()
    assert state.phase == "failed"
    assert "exited with code 3" in state.reason
    assert "--port-base" in state.reason
    assert state.describe().startswith("failed: ")
    await ln.stop()


async def test_child_dying_later_turns_state_to_failed(tmp_path):
    ln, states = launcher(tmp_path, mode="die-later")
    await ln.start()
    try:
        for _ in range(200):
            if states[-1].phase == "failed":
                break
            await asyncio.sleep(0.05)
        assert states[-1].phase == "failed"
        assert "mosquitto died" in states[-1].reason
    finally:
        await ln.stop()


async def test_child_ignoring_sigterm_is_killed(tmp_path):
    ln, _ = launcher(tmp_path, mode="ignore-term")
    await ln.start()
    pid = ln.pid
    await ln.stop(timeout=0.5)
    assert not pid_alive(pid)


async def test_missing_program_fails_cleanly(tmp_path):
    ln = SandboxLauncher(tmp_path, command=["/nonexistent/fleetdesk"])
    state = await ln.start()
    assert state.phase == "failed" and "cannot run" in state.reason


async def test_ready_timeout(tmp_path):
    ln = SandboxLauncher(tmp_path, command=[sys.executable, "-c", "import time; time.sleep(30)", "--"], ready_timeout=0.5)
    state = await ln.start()
    assert state.phase == "failed" and "not ready after" in state.reason
    assert not ln.owned


def test_the_child_dies_with_the_app(tmp_path):
    """A crashed app (SIGKILL) must not leave its sandbox running (Linux: PR_SET_PDEATHSIG)."""
    import signal
    import subprocess
    import time

    if not sys.platform.startswith("linux"):
        pytest.skip("parent-death signal is Linux-only")
    app = f"""
import asyncio, os, sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
from fleetdesk.sandbox.launcher import SandboxLauncher
async def main():
    ln = SandboxLauncher({str(tmp_path)!r}, command={STUB!r}, env={{**os.environ, "STUB_MODE": "ok"}})
    st = await ln.start()
    print(ln.pid, flush=True)
    await asyncio.sleep(60)
asyncio.run(main())
"""
    proc = subprocess.Popen([sys.executable, "-c", app], stdout=subprocess.PIPE, text=True)
    child = 0
    try:
        child = int(proc.stdout.readline())
        assert pid_alive(child)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        deadline = time.monotonic() + 10
        while pid_alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not pid_alive(child), "the sandbox outlived the app that started it"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if child and pid_alive(child):
            os.kill(child, signal.SIGKILL)
