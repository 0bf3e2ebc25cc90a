"""A virtual ESP board: a TCP port that the real esptool flashes through ``socket://``.

One asyncio task per connection. ``socket://`` carries no DTR/RTS, so resets are
inferred (ARCHITECTURE §3): SYNC first on a connection = reset into the ROM (stub gone,
flash kept); a connection that starts with other bootloader commands finds the loader
(or stub) where the last one left it; a connection that sends no bootloader packet
within ``TERMINAL_GRACE`` s is a serial terminal and gets the console (recent output
from a ring buffer first, then live). A ``spec.native_usb`` board (USB-Serial/JTAG) drops
the connection on a SYNC that finds it out of the ROM and re-enumerates under a new port
(same registry location), already in the bootloader. When a bootloader session ends the board boots
what was flashed (:mod:`fleetdesk.virtual.boot`) and runs the firmware through
``fleetdesk.virtual.runtime.launch_firmware``.

Line rate: with ``spec.throttle`` each direction moves at most baud/10 bytes/s of the
rate esptool set (115200 at reset, CHANGE_BAUDRATE later), by sleeping per chunk.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from fleetdesk.virtual import boot, slip
from fleetdesk.virtual.flashmem import FlashMemory
from fleetdesk.virtual.rom import Action, Bootloader
from fleetdesk.virtual.spec import BoardSpec

if TYPE_CHECKING:
    from fleetdesk.virtual.runtime import FirmwareHandle

log = logging.getLogger(__name__)

TERMINAL_GRACE = 0.25  # s without a SLIP packet before a connection counts as a terminal
CONSOLE_RING = 64 * 1024
# What a terminal opened after a boot still gets of it: the chip's output since that boot
# began, at most this much (the reader of a port opens a few ms after esptool's reset and
# must not miss the boot banner). Output from before the latest boot never reaches a new
# terminal: a real UART bridge does not keep minutes of a boot loop for the next reader.
TERMINAL_REPLAY = 8 * 1024
BOOT_LOOP_PERIOD = 1.0
MAX_TERMINAL_BACKLOG = 256 * 1024


class LineRate:
    """Paces one direction of a serial line: n bytes take n*10/baud seconds.

    One sleep per chunk (never per byte). When a sleep wakes up late (a busy machine),
    the overshoot (capped at ``SLACK``) is credited to the next chunk, so the long-run
    rate stays at the line rate instead of drifting below it; idle time on the line
    (the tool thinking) is never credited, so the rate is never above it either.
    """

    SLACK = 0.2

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._free_at = 0.0
        self._credit = 0.0

    async def pace(self, nbytes: int, baud: int) -> None:
        if not self.enabled or nbytes <= 0:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        start = max(now - self._credit, self._free_at)
        self._credit = 0.0
        self._free_at = start + nbytes * 10.0 / baud
        delay = self._free_at - now
        if delay > 0.001:
            await asyncio.sleep(delay)
            self._credit = min(self.SLACK, max(0.0, loop.time() - self._free_at))


def _quickack(sock) -> None:
    """ACK at once (Linux TCP_QUICKACK, reset by the kernel after each receive): a host that
    writes small packets with Nagle on (pyserial's ``socket://`` does) otherwise waits for the
    40 ms delayed ACK before its next packet goes out, a stall a real UART never has."""
    quickack = getattr(socket, "TCP_QUICKACK", None)
    if quickack is not None and sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, quickack, 1)


class _Client:
    def __init__(self, reader, writer, throttle: bool) -> None:
        self.reader = reader
        self.writer = writer
        self.role = "pending"  # pending | terminal | bootloader | done
        self.rx = LineRate(throttle)
        self.tx = LineRate(throttle)
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()
        self.backlog = 0
        self.pump: asyncio.Task | None = None


class VirtualBoard:
    """One virtual board on 127.0.0.1:port.

    Args:
        spec: chip, MAC, flash size, security flags, throttle.
        state_dir: where the flash file (``<name>.flash``) and fs dir (``<name>.fs``) live.
        port: TCP port (0 = pick a free one; kept across unplug/replug).
        register: write a discovery entry (fleetdesk.virtual.registry) while plugged in.
    """

    def __init__(self, spec: BoardSpec, state_dir: Path, port: int = 0, *, register: bool = True,
                 env: dict | None = None) -> None:
        self.spec = spec
        self.state_dir = Path(state_dir)
        self.port = port
        self.register = register
        self.env = env
        self.flash = FlashMemory(self.state_dir / f"{spec.name}.flash", spec.flash_size)
        self.rom = Bootloader(spec, self.flash)
        self.fs_dir = self.state_dir / f"{spec.name}.fs"
        self.state = "off"  # off | bootloader | running | bootloop | idle
        self.boots = 0
        self._server: asyncio.base_events.Server | None = None
        self._clients: set[_Client] = set()
        self._ring = bytearray()
        self._boot_log = bytearray()  # output since the latest boot began (replayed to a new terminal)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._boot_task: asyncio.Task | None = None
        self._app: FirmwareHandle | None = None  # from launch_firmware
        self._boot_result: boot.BootResult | None = None
        self._lock = asyncio.Lock()
        self.control: str | None = None  # "tcp://host:port" of the owning process's control server

    # --- public ----------------------------------------------------------------------
    @property
    def url(self) -> str:
        """The esptool/pyserial port: ``socket://127.0.0.1:PORT``."""
        return f"socket://127.0.0.1:{self.port}"

    @property
    def console_text(self) -> str:
        """Recent console output (the ring buffer), decoded."""
        return self._ring.decode(errors="replace")

    async def start(self, *, power_on: bool = True) -> None:
        """Open the port (and register it); boot what is flashed unless ``power_on`` is False."""
        self._loop = asyncio.get_running_loop()
        await self._listen()
        if power_on:
            await self._boot()

    async def close(self) -> None:
        """Stop the firmware, drop connections, close the port, unregister."""
        await self.unplug()
        if self.register:
            from fleetdesk.virtual import registry

            registry.unregister(self)
        self.flash.close()

    def _close_port(self) -> None:
        """The port vanishes: stop listening and cut every open connection."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for client in list(self._clients):
            client.writer.transport.abort()

    async def unplug(self) -> None:
        """Pull the USB cable: the port disappears and the board loses power."""
        self._close_port()
        await self._power_off()
        self.flash.chip.power_cycle()  # the flash loses power too: volatile status bits go
        self.state = "off"
        if self.register:
            from fleetdesk.virtual import registry

            registry.unplugged(self)

    async def replug(self, *, new_port: bool = False) -> None:
        """Plug the cable back in: same location, the board powers on and boots.

        Args:
            new_port: re-enumerate under another port (like a hub shuffling ttyUSB names or
                a native-USB chip resetting); the registry location stays the same.
        """
        if self._server is None:
            if new_port:
                if self.register:
                    from fleetdesk.virtual import registry

                    registry.unregister(self)
                self.port = 0
            await self._listen()
            await self._boot()

    def drop_connections(self) -> None:
        """Kill every open connection at once (a yanked cable mid-write), power stays on."""
        for client in list(self._clients):
            client.writer.transport.abort()

    async def reset(self) -> None:
        """Press EN: restart into the flashed app (no effect while unplugged: no power)."""
        if self._server is None:
            return
        await self._power_off()
        self.rom.reset()
        await self._boot()

    async def press_button(self, seconds: float = 0.2, *, pin: int | None = None) -> dict:
        """Press the board's button (BOOT, or ``button_pin`` of its config) for `seconds`.

        The firmware counts a press in ``btnCount``; held >= 3 s it goes back to Config mode.

        Returns:
            ``{"pin", "seconds", "listening"}`` (listening False: the running firmware was
            not watching the button, so the press did nothing).

        Raises:
            BoardError: the board is off or runs no firmware, or its config has no button.
        """
        from fleetdesk.errors import BoardError

        app = self._app
        if self._server is None or app is None or not hasattr(app, "press_button"):
            raise BoardError(f"Virtual board {self.url} runs no firmware (state {self.state})",
                             "flash a firmware and let it boot, then press the button")
        return await asyncio.to_thread(app.press_button, seconds, pin=pin)

    # --- server ----------------------------------------------------------------------
    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._on_client, "127.0.0.1", self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]
        if self.register:
            from fleetdesk.virtual import registry

            registry.register(self)

    async def _on_client(self, reader, writer) -> None:
        client = _Client(reader, writer, self.spec.throttle)
        self._clients.add(client)
        decoder = slip.SlipDecoder()
        grace = asyncio.get_running_loop().call_later(TERMINAL_GRACE, self._make_terminal, client)
        sock = writer.get_extra_info("socket")
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                _quickack(sock)
                await client.rx.pace(len(data), self.rom.baud)
                packets, noise = decoder.feed(data)
                if noise and client.role == "terminal":
                    self._terminal_input(noise)
                for packet in packets:
                    await self._on_packet(client, packet)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except Exception:  # a board must never die from one bad connection
            log.exception("virtual board %s: connection failed", self.spec.name)
        finally:
            grace.cancel()
            self._clients.discard(client)
            if client.pump is not None:
                client.pump.cancel()
            with contextlib.suppress(Exception):
                writer.close()
            if client.role == "bootloader" and self.state == "bootloader" and not self.rom.stay_in_bootloader:
                if self._server is not None:
                    await self._boot()

    async def _on_packet(self, client: _Client, packet: bytes) -> None:
        if len(packet) < 8 or packet[0] != 0:
            return  # read-flash acks and noise
        if client.role in ("pending", "terminal", "done"):
            is_sync = packet[1] == 0x08
            if client.role != "pending" and not is_sync:
                return  # the running app does not speak the bootloader protocol
            if client.pump is not None:
                client.pump.cancel()
                client.pump = None
            if is_sync and self.spec.native_usb and self.state != "bootloader":
                client.role = "done"  # its port vanishes under it, like a USB-Serial/JTAG chip's
                await self._reenumerate_into_rom()
                return
            client.role = "bootloader"
            # SYNC first = the tool reset the chip into the ROM; otherwise the loader
            # (or stub) left running by the previous session is still there.
            await self._enter_bootloader(reset=is_sync)
        for item in self.rom.handle(packet):
            if isinstance(item, Action):
                if item.kind == "boot":
                    client.role = "done"
                    await self._boot()
                continue  # "baud": rom.baud already switched after the reply went out
            frame = slip.encode(item)
            await client.tx.pace(len(frame), self.rom.baud)
            client.writer.write(frame)
            await client.writer.drain()

    async def _reenumerate_into_rom(self) -> None:
        """Native USB: reset into the ROM and come back under a new port (same location)."""
        self._close_port()
        await self._enter_bootloader(reset=True)
        if self.register:
            from fleetdesk.virtual import registry

            registry.unregister(self)
        self.port = 0
        await self._listen()
        log.info("virtual board %s: re-enumerated into the bootloader as %s", self.spec.name, self.url)

    # --- console ---------------------------------------------------------------------
    def _make_terminal(self, client: _Client) -> None:
        if client.role != "pending" or client not in self._clients:
            return
        client.role = "terminal"
        if self._boot_log:
            self._queue(client, bytes(self._boot_log))
        client.pump = asyncio.ensure_future(self._pump(client))

    def _queue(self, client: _Client, data: bytes) -> None:
        if client.backlog > MAX_TERMINAL_BACKLOG:
            return  # a terminal that does not read loses output, like a full UART FIFO
        client.backlog += len(data)
        client.queue.put_nowait(data)

    async def _pump(self, client: _Client) -> None:
        try:
            while True:
                data = await client.queue.get()
                client.backlog -= len(data)
                for i in range(0, len(data), 1024):
                    chunk = data[i : i + 1024]
                    await client.tx.pace(len(chunk), 115200)
                    client.writer.write(chunk)
                    await client.writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass

    def console(self, data: bytes) -> None:
        """Append board output (boot log, firmware prints); thread-safe."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._console(data)
        else:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._console, bytes(data))

    def _console(self, data: bytes) -> None:
        self._ring += data
        if len(self._ring) > CONSOLE_RING:
            del self._ring[: len(self._ring) - CONSOLE_RING]
        self._boot_log += data
        if len(self._boot_log) > TERMINAL_REPLAY:
            del self._boot_log[: len(self._boot_log) - TERMINAL_REPLAY]
        for client in self._clients:
            if client.role == "terminal":
                self._queue(client, data)

    def _terminal_input(self, data: bytes) -> None:
        app = self._app
        writer = getattr(app, "write", None)
        if writer is not None:
            with contextlib.suppress(Exception):
                writer(data)

    # --- power states ----------------------------------------------------------------
    async def _enter_bootloader(self, *, reset: bool) -> None:
        async with self._lock:
            if self.state != "bootloader":
                await self._stop_app()
            if reset:
                self.rom.reset()
            self.state = "bootloader"

    async def _boot(self) -> None:
        async with self._lock:
            await self._stop_app()
            self.boots += 1
            self.state = "booting"
            self._boot_task = asyncio.ensure_future(self._run_boot())

    async def _power_off(self) -> None:
        async with self._lock:
            await self._stop_app()

    async def _run_boot(self) -> None:
        self._boot_log.clear()  # a new boot: what came before is not replayed to a new terminal
        try:
            result = await asyncio.to_thread(boot.power_on, self.flash, self.spec.model.name, self.fs_dir,
                                             revision=self.spec.revision)
        except Exception as exc:  # never crash the board on flash contents
            log.exception("virtual board %s: boot failed", self.spec.name)
            self.console(f"E (0) boot: internal error: {exc}\r\n".encode())
            self.state = "idle"
            return
        self._boot_result = result
        self.console(result.log.encode())
        if not result.ok:
            self.state = "bootloop"
            while True:  # a real chip resets and prints the same thing, forever
                await asyncio.sleep(BOOT_LOOP_PERIOD)
                self.console(result.loop_log.encode())
        if "/main.py" not in result.files:
            self.state = "idle"
            self.console(b"MicroPython REPL (no main.py)\r\n>>> ")
            return
        self.state = "running"
        try:
            self._app = await asyncio.to_thread(self._launch)
        except Exception as exc:  # noqa: BLE001 - shown on the console, as a board that fails to start
            self.state = "idle"
            # one line, advice included: a station reading the console sees it whole or not at all
            text = " -> ".join(filter(None, (getattr(exc, "message", str(exc)), getattr(exc, "advice", None))))
            self.console(f"Traceback (most recent call last):\r\nE: cannot start the firmware: {text}\r\n".encode())

    def _launch(self) -> FirmwareHandle:
        from fleetdesk.virtual.runtime import launch_firmware

        env = dict(self.env or {})
        return launch_firmware(self.fs_dir, mac=self.spec.mac, chip=self.spec.model.name,
                               console=self.console, interpreter=self.spec.interpreter, env=env or None,
                               psram=self.spec.psram)

    async def _stop_app(self) -> None:
        task, self._boot_task = self._boot_task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        app, self._app = self._app, None
        if app is not None:
            await asyncio.to_thread(_stop_handle, app)
        result, self._boot_result = self._boot_result, None
        if result is not None and result.ok:
            try:
                await asyncio.to_thread(boot.sync_back, self.flash, result, self.fs_dir)
            except Exception:
                log.exception("virtual board %s: fs sync back failed", self.spec.name)
        self.state = "off" if self.state == "off" else self.state


def _stop_handle(app) -> None:
    """Stop a firmware handle: its own stop(), else SIGTERM then kill (Popen-like)."""
    stop = getattr(app, "stop", None)
    if callable(stop):
        stop()
        return
    proc = getattr(app, "proc", app)
    with contextlib.suppress(Exception):
        proc.terminate()
        try:
            proc.wait(timeout=3)
        except Exception:  # noqa: BLE001 - not ending: kill it
            proc.kill()
            proc.wait(timeout=3)


def default_state_dir() -> Path:
    """Where boards keep their flash unless told otherwise: <data dir>/virtual-boards."""
    from fleetdesk.paths import data_dir

    path = data_dir() / "virtual-boards"
    path.mkdir(parents=True, exist_ok=True)
    return path

