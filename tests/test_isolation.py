"""Issue 21 §1: every test starts with its own empty HOME and XDG dirs and no AWS_* setting, whatever
the machine's environment or an earlier test left behind."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

_seen_homes: list[str] = []


@pytest.mark.parametrize("round_", [1, 2])
def test_each_test_has_its_own_empty_home(round_, monkeypatch):
    home = Path(os.environ["HOME"])
    assert home.is_dir() and not any(home.rglob("*.conf")), sorted(home.rglob("*"))
    for key in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME"):
        assert Path(os.environ[key]).is_relative_to(home), key
    assert not [k for k in os.environ if k.startswith(("AWS_", "BOTO_"))]
    assert str(home) not in _seen_homes  # not the HOME of the round before
    _seen_homes.append(str(home))
    # what a test writes there and leaves in the environment is gone for the next round
    (Path(os.environ["XDG_CONFIG_HOME"]) / "fleetdesk").mkdir(parents=True, exist_ok=True)
    (Path(os.environ["XDG_CONFIG_HOME"]) / "fleetdesk" / "fleetdesk.conf").write_text("[x]\n")
    if round_ == 1:  # a careless test's own leak (round 2 must not see it)
        os.environ["AWS_PROFILE"] = "does-not-exist"
