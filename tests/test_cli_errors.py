"""The CLI's last resort: an unexpected error is one line and a hint, not a traceback;
--verbose/--debug turn on logging."""

from __future__ import annotations

import logging

import pytest

from fleetdesk import cli, firmware_cli


@pytest.fixture
def broken_inspect(monkeypatch):
    def boom(args):
        logging.getLogger("fleetdesk.firmware").info("inspecting %s", args.bundle)
        raise ZeroDivisionError("the bundle reader divided by zero")

    monkeypatch.setattr(firmware_cli, "_inspect", boom)


@pytest.fixture(autouse=True)
def fresh_logging():
    root, fd = logging.getLogger(), logging.getLogger("fleetdesk")
    saved = root.handlers[:], root.level, fd.level
    yield
    root.handlers, root.level = saved[0], saved[1]
    fd.setLevel(saved[2])


def test_unexpected_error_is_one_line_and_a_hint(broken_inspect, capsys):
    assert cli.main(["firmware", "inspect", "x"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert lines[0] == "fleetdesk: unexpected error (ZeroDivisionError): the bundle reader divided by zero"
    assert "--debug" in lines[1] and len(lines) == 2


def test_debug_shows_the_traceback_and_logs(broken_inspect):
    with pytest.raises(ZeroDivisionError):
        cli.main(["--debug", "firmware", "inspect", "x"])
    assert logging.getLogger().level == logging.DEBUG


def test_verbose_logs_fleetdesk_info(broken_inspect, capsys):
    cli.main(["--verbose", "firmware", "inspect", "x"])
    err = capsys.readouterr().err
    assert "INFO fleetdesk.firmware: inspecting x" in err and "Traceback" not in err


def test_without_flags_info_stays_quiet(broken_inspect, capsys):
    cli.main(["firmware", "inspect", "x"])
    assert "inspecting" not in capsys.readouterr().err


def test_firmware_build_without_main_py_refuses(monkeypatch, tmp_path, capsys):
    from fleetdesk.boards import bundle

    monkeypatch.setattr(bundle, "firmware_files", lambda *a, **k: {"/fd/app.py": b""})
    assert cli.main(["firmware", "build", "-o", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "have no main.py" in err and "reinstall fleetdesk" in err and "port" not in err
    assert not (tmp_path / "out").exists(), "no bundle that boots to the REPL is written"
