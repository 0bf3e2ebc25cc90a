"""Discovery, unplug/replug and a yanked cable mid-write."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from fleetdesk.virtual import registry


def _connectable(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        return True
    except OSError:
        return False


def test_registered_unplug_replug(host, make_board, run_esptool):
    board = make_board("esp32s3")
    [entry] = registry.list_virtual_ports()
    assert entry["port"] == board.url
    assert (entry["chip"], entry["mac"], entry["pid"]) == ("esp32s3", board.spec.mac, os.getpid())
    location = entry["location"]

    host.unplug(board)
    assert registry.list_virtual_ports() == []
    assert not _connectable(board.port)
    assert board.state == "off"

    host.replug(board)
    [again] = registry.list_virtual_ports()
    assert (again["port"], again["location"]) == (board.url, location)
    assert "ESP32-S3" in run_esptool(board.url, "chip-id").stdout

    old_url = board.url
    host.unplug(board)
    host.replug(board, new_port=True)  # re-enumerated: new port, same physical location
    [moved] = registry.list_virtual_ports()
    assert moved["port"] == board.url != old_url
    assert moved["location"] == location
    assert registry.lookup(old_url) is None

    host.call(board.close())
    host.boards.remove(board)
    assert registry.lookup(board.url) is None


def test_stale_entries_are_ignored(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    path = registry.registry_dir() / "1.json"
    path.write_text(json.dumps({"port": "socket://127.0.0.1:1", "chip": "esp32", "mac": "x", "pid": dead.pid}))
    (registry.registry_dir() / "torn.json").write_text("{not json")
    assert registry.list_virtual_ports() == []
    assert not path.exists()


def test_port_discovery_lists_virtual_boards(make_board):
    from fleetdesk.boards.ports import list_ports

    board = make_board("esp32")
    devices = [p.device for p in list_ports()]
    assert board.url in devices


def _write_in_background(board, image):
    # esptool.cfg in the working dir: give up reconnecting after 2 attempts (default 7 x 1 s)
    (image.parent / "esptool.cfg").write_text("[esptool]\nconnect_attempts = 2\n")
    proc = subprocess.Popen([sys.executable, "-m", "esptool", "--port", board.url, "write-flash", "0x10000", str(image)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=image.parent)
    end = time.monotonic() + 30
    session = None
    while time.monotonic() < end:  # wait until the first data blocks are written, not all of them
        session = board.rom._write
        if session is not None and session["pos"] > session["offset"]:
            break
        time.sleep(0.01)
    assert session is not None and session["pos"] > session["offset"], "esptool never started writing"
    assert session["pos"] < session["offset"] + len(image.read_bytes()), "the write finished before the drop"
    return proc


def _finish(proc) -> tuple[int, str]:
    try:
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, out.decode(errors="replace")


@pytest.mark.slow
def test_dropped_connection_mid_write_esptool_recovers(host, make_board, tmp_path):
    board = make_board("esp32", throttle=True)
    image = tmp_path / "img.bin"
    image.write_bytes(os.urandom(24 * 1024))
    proc = _write_in_background(board, image)
    host.drop_connections(board)
    code, out = _finish(proc)
    assert code == 0, out[-2000:]  # esptool 5 reconnects and rewrites the file
    assert board.flash.read(0x10000, 24 * 1024) == image.read_bytes()


@pytest.mark.slow
def test_unplugged_mid_write_fails_and_board_survives(host, make_board, tmp_path, run_esptool):
    board = make_board("esp32", throttle=True)
    image = tmp_path / "img.bin"
    image.write_bytes(os.urandom(24 * 1024))
    proc = _write_in_background(board, image)
    host.unplug(board)
    code, out = _finish(proc)
    assert code != 0, out[-2000:]
    assert board.flash.read(0x10000, 24 * 1024) != image.read_bytes()
    board.spec.throttle = False  # replugged boards pick up the spec
    host.replug(board)
    run_esptool(board.url, "write-flash", "0x10000", str(image))
    assert board.flash.read(0x10000, 24 * 1024) == image.read_bytes()


@pytest.mark.slow
def test_cli_runs_boards_until_sigterm(tmp_path, run_esptool):
    env = dict(os.environ)
    proc = subprocess.Popen(
        [sys.executable, "-m", "fleetdesk", "boards", "virtual", "--count", "2", "--chip", "esp32c3",
         "--no-throttle", "--json", "--state-dir", str(tmp_path / "state")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True,
    )
    try:
        listing = json.loads(proc.stdout.readline())
        assert [e["chip"] for e in listing] == ["esp32c3", "esp32c3"]
        assert len({e["mac"] for e in listing}) == 2
        url = listing[0]["port"]
        assert url.startswith("socket://127.0.0.1:")
        assert "ESP32-C3" in run_esptool(url, "chip-id").stdout
        ctl = [sys.executable, "-m", "fleetdesk", "boards", "virtual-ctl", url]
        subprocess.run(ctl + ["unplug"], check=True, timeout=30, capture_output=True)
        assert url not in [e["port"] for e in registry.list_virtual_ports()]
        subprocess.run(ctl + ["replug"], check=True, timeout=30, capture_output=True)
        assert url in [e["port"] for e in registry.list_virtual_ports()]
        proc.terminate()
        assert proc.wait(timeout=30) == 0
        assert registry.list_virtual_ports() == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
