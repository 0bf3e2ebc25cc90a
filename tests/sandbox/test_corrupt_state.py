"""Corrupt or partial state stops `sandbox up` with the file named; nothing is re-made; --reset asks first."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from fleetdesk.errors import SandboxError
from fleetdesk.sandbox.child import start_sandbox, stop_sandbox
from fleetdesk.sandbox.state_check import reset_state

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def made_state(tmp_path_factory):
    """A state dir a sandbox really ran on (registry, credentials, CA)."""
    state = tmp_path_factory.mktemp("made") / "state"
    proc, _ = start_sandbox(state)
    stop_sandbox(proc)
    return state


def _up_inproc(state):
    import asyncio

    from fleetdesk.sandbox.server import run_sandbox

    asyncio.run(run_sandbox(state, 0))


def _copy(made_state, tmp_path):
    state = tmp_path / "state"
    shutil.copytree(made_state, state)
    return state


@pytest.mark.parametrize("name, damage, says", [
    ("registry.sqlite", "empty", "is empty"),
    ("registry.sqlite", "delete", "is missing"),
    ("credentials.json", "delete", "is missing"),
    ("credentials.json", "garbage", "is not JSON"),
    ("ca/server.key", "garbage", "is not a PEM private key"),
    ("ca/ca.pem", "delete", "is missing"),
])
def test_damaged_state_is_refused_and_left_as_is(made_state, tmp_path, name, damage, says):
    state = _copy(made_state, tmp_path)
    path = state / name
    if damage == "delete":
        path.unlink()
    else:
        path.write_bytes(b"" if damage == "empty" else b"garbage \x00\xff")
    before = sorted(p.relative_to(state).as_posix() for p in state.rglob("*") if p.name != "sandbox.lock")
    with pytest.raises(SandboxError) as ei:
        _up_inproc(state)
    assert str(path) in str(ei.value) and says in str(ei.value)
    assert "--reset" in ei.value.advice and "restore" in ei.value.advice
    after = sorted(p.relative_to(state).as_posix() for p in state.rglob("*") if p.name != "sandbox.lock")
    assert after == before  # nothing made in its place
    if damage != "delete":
        assert path.read_bytes() == (b"" if damage == "empty" else b"garbage \x00\xff")


def test_reset_needs_the_word_then_moves_state_aside(made_state, tmp_path):
    state = _copy(made_state, tmp_path)
    (state / "registry.sqlite").write_bytes(b"")
    res = subprocess.run([sys.executable, "-m", "fleetdesk.sandbox", "up", "--reset", "--state-dir", str(state),
                          "--port-base", "0"], input="yes\n", capture_output=True, text=True, timeout=60)
    assert res.returncode == 1 and "not reset" in res.stderr
    assert (state / "credentials.json").exists()  # untouched

    with pytest.raises(SandboxError):
        reset_state(state, lambda prompt: "reset please")
    aside = reset_state(state, lambda prompt: "RESET")
    assert aside and (aside / "credentials.json").exists() and not state.exists()
    proc, info = start_sandbox(state)  # an empty sandbox starts there now
    stop_sandbox(proc)
