"""The app with the real sandbox: started as a child (status bar follows), attached when one
runs already, stopped on exit only when it is ours; a port clash shows as failed."""

from __future__ import annotations

import asyncio
import socket

import pytest

from fleetdesk.sandbox.launcher import SandboxLauncher, find_running, pid_alive
from fleetdesk_gui.app import CloudController

from gui_testutil import until

pytestmark = [pytest.mark.gui, pytest.mark.slow, pytest.mark.timeout(240)]


def test_app_starts_attaches_and_stops_the_sandbox(app_window, qloop, tmp_path, shot):
    ctx, win = app_window
    state_dir = tmp_path / "sandbox"
    seen = []
    ctx.cloud_state_changed.connect(lambda s: seen.append(win.status_label.text()))
    owner = CloudController(ctx, str(state_dir), port_base=0)

    async def scenario():
        await owner.apply()
        assert any(t.endswith("Sandbox — starting") for t in seen), seen
        port = ctx.cloud.endpoint["mqtt_port"]
        assert win.status_label.text() == f"Profile sandbox · Sandbox — running, mqtt 127.0.0.1:{port}"
        await until(lambda: win.conn_label.text() == "Cloud: connected", 30, what="cloud connected")
        assert ctx.live.session is not None
        pid = owner.launcher.pid
        assert pid_alive(pid)
        shot(win, "window-sandbox-running")
        # a second app on the same state dir attaches and leaves the sandbox running on exit
        from fleetdesk.config import Profiles
        from fleetdesk_gui.app import build_window

        ctx2, win2 = build_window(Profiles(), ctx.settings)
        try:
            second = CloudController(ctx2, str(state_dir), connect=False)
            await second.apply()
            assert ctx2.cloud.attached and win2.status_label.text().endswith(f"mqtt 127.0.0.1:{port} (attached)")
            await second.shutdown()
            assert pid_alive(pid), "an attached app stopped the sandbox it did not start"
        finally:
            win2.close()
        await owner.shutdown()
        assert not pid_alive(pid), "the app left its sandbox running on exit"
        assert await find_running(state_dir) is None
        assert win.status_label.text().endswith("Sandbox — stopped")

    qloop.run_until_complete(asyncio.wait_for(scenario(), 200))


def test_port_clash_shows_as_failed(qloop, tmp_path):
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(1)
    port = blocker.getsockname()[1]
    try:
        ln = SandboxLauncher(tmp_path / "sb", port_base=port)
        state = qloop.run_until_complete(asyncio.wait_for(ln.start(), 120))
        qloop.run_until_complete(ln.stop())
    finally:
        blocker.close()
    assert state.phase == "failed"
    assert str(port) in state.reason, state.reason


def test_switching_to_an_aws_profile_stops_our_sandbox(app_window, qloop, tmp_path):
    from fleetdesk.config import Profile, Profiles

    ctx, win = app_window
    controller = CloudController(ctx, str(tmp_path / "sb"), connect=False, port_base=0)

    async def scenario():
        await controller.apply()
        pid = controller.launcher.pid
        assert ctx.cloud.phase == "running" and pid_alive(pid)
        aws = Profile(name="prod", kind="aws", endpoint="abc-ats.iot.eu-west-1.amazonaws.com", region="eu-west-1")
        ctx.set_profiles(Profiles(active="prod", items={"sandbox": Profile(), "prod": aws}))  # as Settings does
        await until(lambda: not pid_alive(pid), 30, what="sandbox stopped")
        await until(lambda: win.status_label.text() == "Profile prod · AWS eu-west-1 — abc-ats.iot.eu-west-1.amazonaws.com",
                    10, what="AWS status")
        await controller.shutdown()

    qloop.run_until_complete(asyncio.wait_for(scenario(), 120))


def test_gui_command_starts_the_sandbox_and_stops_it_on_sigterm(tmp_path):
    import json
    import os
    import signal
    import subprocess
    import sys
    import time

    import threading

    state = tmp_path / "sb"
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "FLEETDESK_SANDBOX_PORT_BASE": "0"}
    # -v: the app logs its MQTT connection's states on stderr ("mqtt connected"), which the test waits for
    gui = subprocess.Popen([sys.executable, "-m", "fleetdesk", "-v", "gui", "--state-dir", str(state)], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    err: list[str] = []
    reader = threading.Thread(target=lambda: err.extend(iter(gui.stderr.readline, "")), daemon=True)
    reader.start()
    sandbox_pid = None
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and sandbox_pid is None:
            try:
                sandbox_pid = json.loads((state / "endpoint.json").read_text())["pid"]
            except (OSError, ValueError, KeyError):
                assert gui.poll() is None, "".join(err)
                time.sleep(0.2)
        assert sandbox_pid and pid_alive(sandbox_pid), "the app did not start its sandbox"
        deadline = time.monotonic() + 60
        while not any("mqtt connected" in line for line in err):  # SIGTERM a connected app, not one still starting
            assert gui.poll() is None and time.monotonic() < deadline, "the app never connected:\n" + "".join(err[-30:])
            time.sleep(0.1)
        gui.send_signal(signal.SIGTERM)
        assert gui.wait(60) == 0, "".join(err[-30:])
        deadline = time.monotonic() + 15
        while pid_alive(sandbox_pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not pid_alive(sandbox_pid), "the app exited and left its sandbox running"
    finally:
        if gui.poll() is None:
            gui.kill()
            gui.wait(10)
        if sandbox_pid and pid_alive(sandbox_pid):
            os.kill(sandbox_pid, signal.SIGKILL)
