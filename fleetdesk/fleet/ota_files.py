"""OTA packages from this checkout, and a check that a picked file is one.

This firmware updates itself by file-set OTA (:mod:`fleetdesk.fleet.otapkg`, ``FDPKG1``): a
bundle's ``app.bin`` or a merged image uploads fine and then fails on every device ("no OTA
app partition"), so the app refuses such a file before it is uploaded and offers to build the
package instead.
"""

from __future__ import annotations

from pathlib import Path

from fleetdesk.errors import FleetdeskError
from fleetdesk.fleet.otapkg import MAGIC, firmware_package, sha256_hex
from fleetdesk.paths import data_dir


def build_ota_package(version: str, out: Path | None = None) -> Path:
    """Write the OTA package of this checkout's firmware as ``version``; returns its path.

    Args:
        out: the file to write (default ``<data dir>/ota/fleetdesk-<version>.pkg``).

    Raises:
        FleetdeskError: a version the firmware cannot carry, or the file cannot be written.
    """
    data = firmware_package(version)
    path = Path(out) if out is not None else data_dir() / "ota" / f"fleetdesk-{version}.pkg"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    except OSError as exc:
        raise FleetdeskError(f"cannot write {path}: {exc.strerror or exc}", "choose another output file") from exc
    return path


def check_ota_file(path: str | Path) -> None:
    """Refuse a file that is not an OTA package before it is uploaded.

    Raises:
        FleetdeskError: unreadable, or a flash image / other file, naming what to use instead.
    """
    path = Path(path)
    try:
        with path.open("rb") as f:
            head = f.read(len(MAGIC))
    except OSError as exc:
        raise FleetdeskError(f"cannot read {path}: {exc.strerror or exc}", "pick the file again") from exc
    if head == MAGIC:
        return
    what = "a flash image" if head[:1] == b"\xe9" else "not an OTA package"
    raise FleetdeskError(f"{path.name} is {what}: this firmware updates by OTA packages (FDPKG1), so every "
                         "device would fail the job",
                         "press Build OTA package (or run `fleetdesk firmware ota --version X -o FILE.pkg`)")


def describe_package(path: Path) -> dict:
    """{"path", "size", "sha256"} of a package file."""
    data = Path(path).read_bytes()
    return {"path": str(path), "size": len(data), "sha256": sha256_hex(data)}
