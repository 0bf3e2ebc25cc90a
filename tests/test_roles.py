"""Child roles: the standalone app starts its own children as `<app> --fleetdesk-role NAME`."""

from __future__ import annotations

import subprocess
import sys

import pytest

from fleetdesk import roles


def test_from_python_a_child_is_python_m(monkeypatch):
    monkeypatch.delattr(sys, "frozen", raising=False)
    assert roles.module_command("fleetdesk.boards.worker") == [sys.executable, "-m", "fleetdesk.boards.worker"]


def test_frozen_children_are_the_app_with_a_role(monkeypatch):
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "executable", "/opt/fleetdesk/fleetdesk")
    assert roles.module_command("fleetdesk", "sandbox", "up") == ["/opt/fleetdesk/fleetdesk", "sandbox", "up"]
    assert roles.module_command("fleetdesk.sandbox", "up") == ["/opt/fleetdesk/fleetdesk", "--fleetdesk-role",
                                                                "fleetdesk.sandbox", "up"]
    with pytest.raises(ValueError, match="not a fleetdesk child role"):
        roles.module_command("os")


def _entry(*args: str) -> subprocess.CompletedProcess:
    """Run the standalone app's entry script as the app would run it."""
    code = "import sys; from fleetdesk.roles import dispatch; rc = dispatch(); sys.exit(rc)"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60)


def test_dispatch_runs_the_role_with_its_arguments():
    out = _entry("--fleetdesk-role", "fleetdesk", "--version")
    assert out.returncode == 0 and out.stdout.startswith("fleetdesk "), out.stderr
    out = _entry("--fleetdesk-role", "micropython", "-c", "import sys; print('up', sys.implementation.name)")
    assert out.returncode == 0 and "up micropython" in out.stdout, out.stderr


def test_dispatch_refuses_an_unknown_role():
    out = _entry("--fleetdesk-role", "os", "x")
    assert out.returncode == 2 and "unknown role 'os'" in out.stderr
