"""The installed product: the wheel, in a fresh venv outside the repo, used by a new user.

`pip wheel` builds it from this checkout; `pip install 'fleetdesk[virtual]'` puts it and its
declared dependencies (nothing else: not the dev venv's packages) into a venv in a temporary
directory; then, with their own HOME and the working directory outside the repo, the user runs
the README's first steps. Anything still read from a checkout, or imported but not declared,
fails here. PyPI is reached through pip's cache (about 30 s when cached).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from helpers_install import ROOT, Server, run, user_env, venv_bin

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(the venv's bin dir, a fresh HOME) with the wheel installed there."""
    base = tmp_path_factory.mktemp("installed")
    assert ROOT not in base.parents
    dist = base / "dist"
    # built from a copy: setuptools' build/ in the checkout would carry files deleted since into the wheel
    src = base / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info",
                                                             "__pycache__", "tmp", ".state", "bench", "docs", "tests"))
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist), str(src)],
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = dist.glob("fleetdesk-*.whl")
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    bin_dir = venv_bin(venv)
    pip = subprocess.run([str(bin_dir / "python"), "-m", "pip", "install", "-q", f"{wheel}[virtual]"],
                         capture_output=True, text=True, timeout=600)
    assert pip.returncode == 0, pip.stderr[-3000:]
    home = base / "home"
    home.mkdir()
    return bin_dir, home


def test_installed_copy_does_its_main_jobs(installed):
    bin_dir, home = installed
    env = user_env(home, bin_dir)
    fd = str(bin_dir / "fleetdesk")

    version = run([fd, "--version"], env, home)
    assert version.returncode == 0 and version.stdout.startswith("fleetdesk "), version.stderr
    where = run([str(bin_dir / "python"), "-c", "from fleetdesk import paths; print(paths.RESOURCES_DIR); "
                 "print(paths.FIRMWARE_DIR)"], env, home)
    assert where.returncode == 0, where.stderr
    assert all(line.startswith(str(bin_dir.parent)) for line in where.stdout.split()), where.stdout

    servers = []
    try:
        sandbox = Server([fd, "sandbox", "up", "--json", "--port-base", "0"], env, home, home / "sandbox.log")
        servers.append(sandbox)

        built = run([fd, "firmware", "build", "-o", str(home / "bundle"), "--json"], env, home)
        assert built.returncode == 0, built.stderr
        assert "/main.py" in json.loads(built.stdout)["files"]

        boards = Server([fd, "boards", "virtual", "--count", "1", "--no-throttle", "--json",
                         "--state-dir", str(home / "vb")], env, home, home / "boards.log")
        servers.append(boards)
        port = boards.doc[0]["port"]

        flashed = run([fd, "flash", port, "--bundle", str(home / "bundle"), "--identity", "--operator", "new-user",
                       "--json"], env, home)
        assert flashed.returncode == 0, (flashed.stdout, flashed.stderr[-3000:], boards.tail())
        (doc,) = [json.loads(line) for line in flashed.stdout.splitlines()]
        assert doc["result"] == "PASS" and doc["thing"], doc
        assert "presence" in doc["presence"], doc["presence"]  # online by the cloud's own presence event

        job = run([fd, "jobs", "create", "reboot-1", "--template", "reboot", "--thing", doc["thing"], "--json"], env, home)
        assert job.returncode == 0, job.stderr

        gui = run([fd, "gui"], {**env, "FLEETDESK_EXIT_WHEN_SHOWN": "1"}, home, timeout=120)
        assert gui.returncode == 0 and "FLEETDESK_WINDOW_SHOWN" in gui.stdout, gui.stderr[-3000:]
        noise = [line for line in gui.stderr.splitlines()
                 if any(w in line.lower() for w in ("missing", "no such file", "not found", "traceback"))]
        assert not noise, noise
    finally:
        for server in reversed(servers):
            server.stop()
