"""Virtual boards (in a background asyncio loop) and a firmware bundle for station tests."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from fleetdesk.paths import FIRMWARE_DIR


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


def _fallback_bundle(out: Path, chip: str = "esp32") -> Path:
    """A MicroPython-layout bundle built from the shared image helpers (no CLI needed)."""
    from fleetdesk.boards import appimage, fsimage, partitions

    out.mkdir(parents=True, exist_ok=True)
    table = partitions.build([
        partitions.Partition("nvs", 1, 2, 0x9000, 0x6000),
        partitions.Partition("phy_init", 1, 1, 0xF000, 0x1000),
        partitions.Partition("factory", 0, 0, 0x10000, 0x1F0000),
        partitions.Partition("vfs", 1, 0x81, 0x200000, 0x200000),
    ])
    files = {}
    for path in [FIRMWARE_DIR / "main.py", *sorted((FIRMWARE_DIR / "fd").rglob("*.py"))]:
        if path.exists():
            files["/" + str(path.relative_to(FIRMWARE_DIR))] = path.read_bytes()
    (out / "partition-table.bin").write_bytes(table)
    (out / "app.bin").write_bytes(appimage.build_image(chip, b"fleetdesk placeholder app".ljust(4096, b"\0")))
    (out / "vfs.bin").write_bytes(fsimage.build_image(files, 0x200000))
    manifest = {"name": "Fleetdesk", "version": "test", "builds": [{"chipFamily": chip.upper(), "parts": [
        {"path": "partition-table.bin", "offset": 0x8000},
        {"path": "app.bin", "offset": 0x10000},
        {"path": "vfs.bin", "offset": 0x200000},
    ]}]}
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


def build_bundle(out: Path, chip: str = "esp32") -> Path:
    """`fleetdesk firmware build` when available, else the fallback above."""
    try:
        import fleetdesk.firmware_cli  # noqa: F401
        import fleetdesk.boards.bundle  # noqa: F401
    except ImportError:
        return _fallback_bundle(out, chip)
    proc = subprocess.run([sys.executable, "-m", "fleetdesk", "firmware", "build", "--chip", chip, "-o", str(out)],
                          capture_output=True, text=True, timeout=120)
    if proc.returncode != 0 or not (out / "manifest.json").exists():
        return _fallback_bundle(out, chip)
    return out


@pytest.fixture(scope="session")
def bundle_dir(tmp_path_factory) -> Path:
    return build_bundle(tmp_path_factory.mktemp("bundle") / "esp32")
