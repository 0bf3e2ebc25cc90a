"""Virtual boards on a background asyncio loop (``rig``) and the firmware bundle an operator builds
(``bundle_dir``): the station tests in tests/boards and the Stations-page tests in tests/gui use them
(each area's conftest imports the fixtures from here)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from pathlib import Path

import pytest


class BoardRig:
    """Runs virtual boards on a private event loop thread; closes them all at the end."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.boards = []

    def call(self, coro, timeout: float = 30):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def add(self, n: int = 1, *, throttle: bool = False, register: bool = False, **spec_kw):
        from fleetdesk.virtual.board import VirtualBoard
        from fleetdesk.virtual.spec import BoardSpec

        out = []
        for _ in range(n):
            name = f"b{len(self.boards)}"
            spec = BoardSpec(name=name, throttle=throttle, **spec_kw)
            board = VirtualBoard(spec, self.state_dir, register=register)
            self.call(board.start())
            self.boards.append(board)
            out.append(board)
        return out

    def wait_released(self, board, timeout: float = 30.0) -> None:
        """Wait until no client holds ``board``'s port (e.g. an orphaned flash worker let go)."""
        import time

        deadline = time.monotonic() + timeout
        while self.call(self._client_count(board)):
            assert time.monotonic() < deadline, f"something still holds {board.url} after {timeout:.0f} s"
            time.sleep(0.05)

    @staticmethod
    async def _client_count(board) -> int:
        return len(board._clients)

    def drop(self, board) -> None:
        self.loop.call_soon_threadsafe(board.drop_connections)

    def close(self) -> None:
        for b in self.boards:
            try:
                self.call(b.close(), timeout=15)
            except Exception:
                pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)


@pytest.fixture
def rig(tmp_path):
    r = BoardRig(tmp_path / "boards")
    r.state_dir.mkdir()
    try:
        yield r
    finally:
        r.close()


def build_bundle(out: Path, chip: str = "esp32") -> Path:
    """The bundle `fleetdesk firmware build` makes, exactly as an operator would get it.

    No fallback: a broken build must fail the station tests that stand on it, not be papered over.
    """
    proc = subprocess.run([sys.executable, "-m", "fleetdesk", "firmware", "build", "--chip", chip, "-o", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"fleetdesk firmware build failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    assert (out / "manifest.json").exists(), f"fleetdesk firmware build wrote no manifest.json in {out}"
    return out


@pytest.fixture(scope="session")
def bundle_dir(tmp_path_factory) -> Path:
    return build_bundle(tmp_path_factory.mktemp("bundle") / "esp32")
