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


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory):
    """A running sandbox (SandboxInfo) shared by the whole test session; stopped at the end."""
    from fleetdesk.sandbox.child import start_sandbox, stop_sandbox

    state_dir = tmp_path_factory.mktemp("sandbox-session") / "state"
    proc, info = start_sandbox(state_dir)
    try:
        yield info
    finally:
        stop_sandbox(proc)
