"""The CLI entry points agree: console script, python -m fleetdesk and main.py."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fleetdesk.cli import build_parser, main

ROOT = Path(__file__).resolve().parent.parent


def test_help_lists_gui_and_sandbox(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "gui" in out and "sandbox" in out


def test_every_command_family_registers_and_a_missing_one_fails_loudly():
    import argparse

    from fleetdesk.cli import COMMAND_MODULES, register_modules

    choices = build_parser()._subparsers._group_actions[0].choices
    for command in ("gui", "sandbox", "shadow", "things", "jobs", "boards", "flash", "firmware", "fleet", "ble"):
        assert command in choices, f"`fleetdesk {command}` is not registered"
    boards = choices["boards"]._subparsers._group_actions[0].choices
    assert {"list", "info", "pool", "virtual", "virtual-ctl", "press"} <= set(boards)
    with pytest.raises(ModuleNotFoundError, match="fleetdesk.no_such_cli"):
        register_modules(argparse.ArgumentParser().add_subparsers(), (*COMMAND_MODULES, "fleetdesk.no_such_cli"))


def test_an_unknown_profile_is_named_with_the_known_ones(capsys):
    assert main(["things", "list", "--profile", "nosuch"]) == 1
    err = capsys.readouterr().err
    assert "no profile named 'nosuch'" in err and "sandbox" in err


def test_no_command_prints_help_and_fails(capsys):
    assert main([]) == 2
    assert "usage" in capsys.readouterr().out


def test_python_dash_m_matches_console_script():
    via_m = subprocess.run([sys.executable, "-m", "fleetdesk", "--version"], capture_output=True, text=True, check=True)
    script = shutil.which("fleetdesk", path=os.path.dirname(sys.executable)) or shutil.which("fleetdesk")
    assert script, "the fleetdesk console script is not installed"
    via_script = subprocess.run([script, "--version"], capture_output=True, text=True, check=True)
    assert via_m.stdout == via_script.stdout
    assert via_m.stdout.startswith("fleetdesk ")


def test_main_py_starts_the_gui_command():
    parser = build_parser()
    args = parser.parse_args(["gui"])
    assert args.func.__module__ == "fleetdesk.gui_command"
    assert "main([\"gui\"" in (ROOT / "main.py").read_text()


def test_ci_calls_exactly_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "./run test" in ci
    assert "./run test" in readme and "./run\n" in readme
