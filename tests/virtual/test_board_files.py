"""A virtual board's unpacked filesystem is as private as its flash (issue 16 §5)."""

from __future__ import annotations

import json
import os
import stat
import time

from fleetdesk.boards import bundle


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_unpacked_files_are_owner_only(make_board, host, tmp_path):
    config = {"thing_name": "fd-test", "endpoint": "127.0.0.1", "port": 8883, "pop": "1234",
              "wifi": {"ssid": "line", "password": "secret"}}
    built = bundle.build_bundle(tmp_path / "bundle", chip="esp32").with_vfs_files({
        "/config.json": json.dumps(config).encode(), "/certs/key.der": b"\x30\x82 private key",
        "/certs/cert.der": b"\x30\x82 certificate"})
    board = make_board("esp32", power_on=False)
    for offset, data in built.flash_args():
        board.flash.write(offset, data)
    host.reset(board)
    key = board.fs_dir / "certs" / "key.der"
    end = time.monotonic() + 30
    while not key.exists() and time.monotonic() < end:
        time.sleep(0.05)
    assert key.exists(), f"the board never unpacked its filesystem:\n{board.console_text[-1500:]}"
    assert _mode(board.fs_dir) == 0o700
    for root, dirs, files in os.walk(board.fs_dir):
        for d in dirs:
            if d != "__pycache__":
                assert _mode(os.path.join(root, d)) == 0o700, os.path.join(root, d)
        for name in files:
            assert _mode(os.path.join(root, name)) == 0o600, os.path.join(root, name)
    assert _mode(board.fs_dir / "config.json") == 0o600
    assert _mode(board.flash.path) == 0o600
