"""The headless CLI end to end: `fleetdesk boards virtual` in one process, then
`fleetdesk boards list|info` and `fleetdesk flash --all --identity --json` in others."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from netutil import refused_port

from fleetdesk.process import stop_child

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def _fd(*args, timeout=240):
    return subprocess.run([sys.executable, "-m", "fleetdesk", *args], capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ))


@pytest.fixture
def virtual_boards(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "fleetdesk", "boards", "virtual", "--count", "3", "--no-throttle", "--json",
         "--state-dir", str(tmp_path / "vb")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    try:
        line = proc.stdout.readline()
        boards = json.loads(line)
        yield boards
    finally:
        stop_child(proc)


def test_cli_list_info_and_parallel_identity_flash(virtual_boards, bundle_dir, sandbox, tmp_path):
    urls = sorted(b["port"] for b in virtual_boards)
    listed = [json.loads(x) for x in _fd("boards", "list", "--json").stdout.splitlines()]
    virt = {p["device"]: p for p in listed if p["kind"] == "virtual"}
    assert sorted(virt) == urls and all(p["probe"] for p in virt.values())

    info = _fd("boards", "info", urls[0], "--json")
    assert info.returncode == 0, info.stderr
    doc = json.loads(info.stdout)
    assert doc["chip"] == "ESP32" and doc["mac"] == next(b["mac"] for b in virtual_boards if b["port"] == urls[0])

    res = _fd("flash", "--all", "--bundle", str(bundle_dir), "--identity", "--state-dir", sandbox.state_dir,
              "--operator", "cli-test", "--json")
    lines = [json.loads(x) for x in res.stdout.splitlines()]
    assert res.returncode == 0, (res.stderr, [(x["error"], x["console_tail"][-3:]) for x in lines])
    assert sorted(x["port"] for x in lines) == urls
    assert all(x["result"] == "PASS" for x in lines)
    assert len({x["thing"] for x in lines}) == 3 and len({x["certificate_id"] for x in lines}) == 3

    # one board gone: that board FAILs, the exit code says so, the others still PASS
    from fleetdesk.virtual.registry import control

    control(urls[1], "unplug")
    res = _fd("flash", *urls, "--bundle", str(bundle_dir), "--json", "--no-wait-online")
    lines = {json.loads(x)["port"]: json.loads(x) for x in res.stdout.splitlines()}
    assert res.returncode == 1
    assert lines[urls[1]]["result"] == "FAIL" and lines[urls[1]]["advice"]
    assert lines[urls[0]]["result"] == "PASS" and lines[urls[0]]["reflash"]
    control(urls[1], "replug")

    from fleetdesk.store.production import ProductionDB

    rows = ProductionDB().attempts()
    assert [r["result"] for r in rows].count("PASS") == 5 and [r["result"] for r in rows].count("FAIL") == 1


def test_cli_refuses_bad_bundle_with_exit_code(tmp_path):
    (tmp_path / "manifest.json").write_text('{"builds": [{"chipFamily": "ESP32", "parts": '
                                            '[{"path": "nope.bin", "offset": 65536}]}]}')
    res = _fd("flash", f"socket://127.0.0.1:{refused_port()}", "--bundle", str(tmp_path), timeout=60)
    assert res.returncode == 2 and "nope.bin is missing" in res.stderr  # 2: nothing could start
