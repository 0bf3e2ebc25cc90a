"""OTA file-set packages ("FDPKG1") for the firmware's off-board / app-level OTA.

Format (streamable, parsed by firmware/fd/ota.py): ``b"FDPKG1\\n"``, then per file
``b"<path>\\n<size>\\n"`` + the bytes, then ``b"END\\n"``. The job document or shadow carries
the package's SHA-256 (:func:`sha256_hex`).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from fleetdesk.errors import FleetdeskError
from fleetdesk.paths import FIRMWARE_DIR

MAGIC = b"FDPKG1\n"


def build_package(files: dict[str, bytes]) -> bytes:
    """Pack ``{relative path: bytes}`` into one FDPKG1 image."""
    out = bytearray(MAGIC)
    for path, data in sorted(files.items()):
        path = path.strip("/")
        if not path or ".." in path.split("/") or "\n" in path:
            raise FleetdeskError(f"bad path in OTA package: {path!r}", "use relative paths like fd/app.py")
        out += f"{path}\n{len(data)}\n".encode() + data
    out += b"END\n"
    return bytes(out)


def firmware_files(version: str, firmware_dir: Path = FIRMWARE_DIR, *, compiled: bool = True) -> dict[str, bytes]:
    """The app package (fd/*.mpy, or fd/*.py with compiled=False) with fd/version saying ``version``."""
    if not re.fullmatch(r"[0-9A-Za-z._+-]{1,32}", version):
        raise FleetdeskError(f"bad firmware version {version!r}", "use something like 1.2.0")
    files = {
        f"fd/{p.name}": p.read_bytes() for p in sorted((firmware_dir / "fd").glob("*.py"))
    }
    files["fd/version.py"] = (
        "# The firmware version this file set was built as (OTA packages carry their own copy).\n"
        f'VERSION = "{version}"\nAPP = "fleetdesk-fw"\n'
    ).encode()
    if compiled:  # what the board imports without compiling (issue 16: the heap it saves)
        from fleetdesk.boards.mpyfiles import compile_files

        files = compile_files(files)
    return files


def firmware_package(version: str, *, compiled: bool = True) -> bytes:
    """Build the OTA package of the current firmware tree as ``version`` (.mpy unless compiled=False)."""
    return build_package(firmware_files(version, compiled=compiled))


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
