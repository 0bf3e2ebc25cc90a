"""The main window: pages, navigation, status bar, geometry persistence, the real `gui` command."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from fleetdesk.config import Profile, Profiles
from fleetdesk.sandbox.launcher import LauncherState
from fleetdesk_gui.app import SHOWN_MARKER, build_window
from fleetdesk_gui.main_window import PAGES, PageEntry

pytestmark = [pytest.mark.gui, pytest.mark.timeout(60)]


@pytest.fixture
def window(qtbot, qsettings):
    ctx, win = build_window(Profiles(), qsettings)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    return ctx, win


def test_every_registered_page_module_exists_and_builds_pages():
    import importlib

    for entry in PAGES:
        assert callable(importlib.import_module(entry.module).create_page), entry


def test_window_shows_and_navigates(window, qtbot, shot):
    ctx, win = window
    titles = win.page_titles()
    assert "Settings" in titles
    for title in titles:
        page = win.show_page(title)
        assert win.stack.currentWidget() is page
        assert win.current_title() == title
        assert page.isVisible()
    assert win.page("Settings").objectName() == "SettingsPage"
    shot(win.page("Settings").window(), "window-settings")


def test_status_bar_follows_the_sandbox_state(window):
    ctx, win = window
    assert win.status_label.text() == "Profile sandbox · Sandbox — stopped"
    ctx.set_cloud_state(LauncherState("starting"))
    assert win.status_label.text().endswith("Sandbox — starting")
    ctx.set_cloud_state(LauncherState("running", {"mqtt_host": "127.0.0.1", "mqtt_port": 28883}))
    assert win.status_label.text().endswith("Sandbox — running, mqtt 127.0.0.1:28883")
    ctx.set_cloud_state(LauncherState("failed", reason="port 28883 in use"))
    assert win.status_label.text().endswith("Sandbox — failed: port 28883 in use")
    assert win.status_label.property("phase") == "failed"


def test_status_bar_names_an_aws_profile(window):
    ctx, win = window
    aws = Profile(name="prod", kind="aws", endpoint="abc-ats.iot.eu-west-1.amazonaws.com", region="eu-west-1")
    ctx.set_profiles(Profiles(active="prod", items={"sandbox": Profile(), "prod": aws}))
    assert win.status_label.text() == "Profile prod · AWS eu-west-1 — abc-ats.iot.eu-west-1.amazonaws.com"


def test_geometry_and_page_survive_a_restart(qtbot, qsettings):
    ctx, win = build_window(Profiles(), qsettings)
    qtbot.addWidget(win)
    win.show()
    win.show_page("Settings")
    screen = win.screen().availableGeometry()
    win.resize(screen.width() - 40, screen.height() - 90)
    size = (win.width(), win.height())
    assert size != (1200, 780)
    win.close()
    ctx2, win2 = build_window(Profiles(), qsettings)
    qtbot.addWidget(win2)
    win2.show()
    assert win2.height() == size[1]
    if size[0] <= screen.width():  # pages wider than the (offscreen) screen get clamped
        assert win2.width() == size[0]
    assert win2.current_title() == "Settings"


def test_a_broken_page_shows_an_error_not_a_crash(qtbot, qsettings, tmp_path, monkeypatch):
    (tmp_path / "broken_page_mod.py").write_text("def create_page(ctx):\n    raise RuntimeError('boom')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    ctx, win = build_window(Profiles(), qsettings, pages=[PageEntry("Broken", "broken_page_mod")])
    qtbot.addWidget(win)
    page = win.show_page("Broken")
    assert "could not load" in page.text() and "boom" in page.text()


def test_gui_command_shows_the_window_and_exits(tmp_path):
    env = {**os.environ, "FLEETDESK_EXIT_WHEN_SHOWN": "1", "QT_QPA_PLATFORM": "offscreen"}
    out = subprocess.run(
        [sys.executable, "-m", "fleetdesk", "gui"], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert SHOWN_MARKER in out.stdout


def test_gui_command_rejects_an_unknown_profile():
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    out = subprocess.run(
        [sys.executable, "-m", "fleetdesk", "gui", "--profile", "nosuch"],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 2
    assert "no profile named 'nosuch'" in out.stderr


def test_connection_state_is_shown_with_its_reason(window):
    from fleetdesk.cloud.connection import State, StateEvent

    ctx, win = window
    ctx.live.connection.emit(StateEvent(State.RECONNECTING, reason="connection reset by broker", attempt=2))
    assert win.conn_label.text() == "Cloud: reconnecting (connection reset by broker)"
    ctx.live.connection.emit(StateEvent(State.CONNECTED))
    assert win.conn_label.text() == "Cloud: connected"


def test_diagnostics_lists_malformed_payloads(qtbot):
    from fleetdesk.cloud.fleet_state import FleetState
    from fleetdesk_gui.widgets.diagnostics import DiagnosticsDialog

    fleet = FleetState()
    fleet.apply_telemetry("dt/t1/env", b'{"temperature": 21, "humidity": 40, "seq": 1}')
    fleet.apply_telemetry("dt/t1/env", b"\xff not json")
    fleet.apply_telemetry("dt/t2/env", b'{"temperature": "hot"}')
    fleet.apply_shadow("t1", b"[1,2]")
    dlg = DiagnosticsDialog(fleet)
    qtbot.addWidget(dlg)
    assert "malformed_telemetry: 2" in dlg.counters.text() and "malformed_shadow: 1" in dlg.counters.text()
    assert dlg.table.rowCount() == 3
    kinds = {dlg.table.item(r, 1).text() for r in range(3)}
    assert kinds == {"malformed_telemetry", "malformed_shadow"}
    assert any("hot" in dlg.table.item(r, 4).text() for r in range(3))


@pytest.mark.slow
def test_status_bar_describes_an_attached_session_not_stopped(app_window, cloud_session, sandbox):
    """A session on a sandbox the app did not start (already running) is what the pages show:
    the status bar names it as running + attached, never "Sandbox — stopped"."""
    ctx, win = app_window
    assert win.conn_label.text() == "Cloud: not connected"
    ctx.live.attach(cloud_session)
    name = cloud_session.profile.name
    assert win.status_label.text() == (
        f"Profile {name} · Sandbox — running, mqtt {sandbox.mqtt_host}:{sandbox.mqtt_port} (attached)")
    assert win.status_label.property("phase") == "running"
    assert win.conn_label.text() == "Cloud: connected"
    assert win.conn_label.property("phase") == "connected"
    ctx.live.detach()
    assert win.status_label.text() == "Profile sandbox · Sandbox — stopped"
    assert win.conn_label.text() == "Cloud: not connected"


def test_my_pages_fit_a_1024_pixel_wide_screen(window):
    """With the 170-px sidebar, a page may ask for at most 854 px, also when long messages show.
    (Stations is checked by its owner.)"""
    from fleetdesk_gui.widgets.serial_console import NO_PORTS

    ctx, win = window
    device = win.page("Device")
    device.console.status.setText(NO_PORTS)  # long notes wrap, they never widen the window
    device.info.setText("Not connected: see the status bar; choose or fix a profile in Settings. " * 2)
    device.plot.readout.setText("greenhouse-0001: 21.3 °C, 55 %  " * 3)
    win.page("Fleet").empty_label.setText("No things in this profile yet. " * 6)
    too_wide = {t: win.page(t).minimumSizeHint().width() for t in ("BLE Setup", "Fleet", "Device", "Jobs", "Settings")
                if win.page(t).minimumSizeHint().width() > 1024 - 170}
    assert not too_wide, too_wide
