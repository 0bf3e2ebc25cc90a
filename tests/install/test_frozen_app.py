"""The standalone app (PyInstaller one-dir, `./run package`) works without Python.

Built from packaging/fleetdesk.spec into a temporary directory, then run from the bundle as a
new user (own HOME, working directory outside the repo, no venv on PATH): `--help`, `sandbox up`,
a virtual board flashed to PASS (the flash worker, the virtual board's MicroPython and the
sandbox are all the app itself in a worker role), and the window offscreen. The build takes
minutes on two cores: this is the slowest test of the suite.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers_install import ROOT, Server, run, user_env

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]


def _pyinstaller() -> Path:
    exe = Path(sys.executable).with_name("pyinstaller")
    if not exe.exists():
        pytest.fail("PyInstaller is not installed: ./run installs the [package] extra (pip install -e '.[package]')")
    return exe


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    base = tmp_path_factory.mktemp("frozen")
    build = subprocess.run([str(_pyinstaller()), "--noconfirm", "--log-level", "WARN", "--distpath", str(base / "dist"),
                            "--workpath", str(base / "build"), str(ROOT / "packaging" / "fleetdesk.spec")],
                           capture_output=True, text=True, timeout=1200, cwd=base)
    assert build.returncode == 0, build.stderr[-4000:]
    app_dir = base / "dist" / "fleetdesk"
    size = sum(p.lstat().st_size for p in app_dir.rglob("*") if p.is_file() and not p.is_symlink())
    print(f"standalone app: {size / 2**20:.0f} MiB in {app_dir}")
    home = base / "home"
    home.mkdir()
    return app_dir, home


def test_standalone_app_flashes_a_virtual_board_and_opens_the_window(app):
    app_dir, home = app
    # no Python of ours on PATH: the bundle must carry everything (mosquitto stays a system program)
    env = user_env(home, app_dir)
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep)
                                  if p and not p.startswith(str(ROOT)) and "pyenv" not in p)
    exe = str(app_dir / "fleetdesk")

    helped = run([exe, "--help"], env, home)
    assert helped.returncode == 0 and "sandbox" in helped.stdout and "flash" in helped.stdout, helped.stderr

    servers = []
    try:
        servers.append(Server([exe, "sandbox", "up", "--json", "--port-base", "0"], env, home, home / "sandbox.log"))
        built = run([exe, "firmware", "build", "-o", str(home / "bundle"), "--json"], env, home)
        assert built.returncode == 0, built.stderr
        boards = Server([exe, "boards", "virtual", "--count", "1", "--no-throttle", "--json",
                         "--state-dir", str(home / "vb")], env, home, home / "boards.log")
        servers.append(boards)
        port = boards.doc[0]["port"]
        flashed = run([exe, "flash", port, "--bundle", str(home / "bundle"), "--identity", "--json"], env, home)
        assert flashed.returncode == 0, (flashed.stdout, flashed.stderr[-3000:], boards.tail())
        (doc,) = [json.loads(line) for line in flashed.stdout.splitlines()]
        assert doc["result"] == "PASS", doc

        gui = run([exe, "gui"], {**env, "FLEETDESK_EXIT_WHEN_SHOWN": "1"}, home, timeout=120)
        assert gui.returncode == 0 and "FLEETDESK_WINDOW_SHOWN" in gui.stdout, gui.stderr[-3000:]
        noise = [line for line in gui.stderr.splitlines()
                 if any(w in line.lower() for w in ("missing", "no such file", "not found", "traceback"))]
        assert not noise, noise
    finally:
        for server in reversed(servers):
            server.stop()
        shutil.rmtree(home / "bundle", ignore_errors=True)
