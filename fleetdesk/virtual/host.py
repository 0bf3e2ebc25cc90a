"""Run virtual boards on a background event loop, for in-process use (tests, GUI, bench).

``BoardHost`` owns one asyncio loop in a daemon thread; its methods are plain blocking
calls, so code that uses esptool's blocking API can start, unplug, replug and stop
boards without an event loop of its own.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from fleetdesk.virtual.board import VirtualBoard
from fleetdesk.virtual.spec import BoardSpec


class BoardHost:
    """Virtual boards served from a background thread. Use as a context manager."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="virtual-boards", daemon=True)
        self._thread.start()
        self.boards: list[VirtualBoard] = []

    def call(self, coro, timeout: float = 30.0):
        """Run a coroutine on the host loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def start_board(self, spec: BoardSpec, state_dir: Path, *, port: int = 0, power_on: bool = True,
                    register: bool = True, env: dict | None = None) -> VirtualBoard:
        """Create and start one board; returns it (its ``url`` is ready for esptool)."""

        async def _start():
            board = VirtualBoard(spec, state_dir, port, register=register, env=env)
            await board.start(power_on=power_on)
            return board

        board = self.call(_start())
        self.boards.append(board)
        return board

    def unplug(self, board: VirtualBoard) -> None:
        """Pull the board's cable: port closed, firmware stopped, registry entry hidden."""
        self.call(board.unplug())

    def replug(self, board: VirtualBoard, *, new_port: bool = False) -> None:
        """Plug it back in (``new_port``: re-enumerate under another port, same location)."""
        self.call(board.replug(new_port=new_port))

    def reset(self, board: VirtualBoard) -> None:
        """Press EN: the board reboots into what is flashed."""
        self.call(board.reset())

    def drop_connections(self, board: VirtualBoard) -> None:
        """Abort every open connection to the board (a yanked cable), power stays on."""
        self._loop.call_soon_threadsafe(board.drop_connections)

    def close(self) -> None:
        """Stop every board (firmware processes included) and the loop thread."""
        if self._loop.is_closed():
            return
        for board in self.boards:
            try:
                self.call(board.close())
            except Exception:  # noqa: BLE001 - closing the rest matters more
                pass
        self.boards.clear()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def __enter__(self) -> BoardHost:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
