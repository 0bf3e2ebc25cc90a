"""The firmware a new user flashes without building anything, and what a bundle holds in one line.

:func:`default_bundle` builds this checkout's firmware (``firmware/``) into the per-user data
dir the first time it is asked for, once per firmware version and chip, exactly as
``fleetdesk firmware build`` does; later calls reuse it. Without a MicroPython base image the
bundle's bootloader and app are placeholders that virtual boards boot; a real board needs
``fleetdesk firmware build --base ESP32_GENERIC-<ver>.bin``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from fleetdesk.boards.bundle import Bundle, build_bundle, firmware_version, load_bundle
from fleetdesk.paths import FIRMWARE_DIR, data_dir


def _source_digest() -> str:
    """A short hash of the firmware sources (a changed checkout builds a new bundle)."""
    h = hashlib.sha256()
    for path in sorted([FIRMWARE_DIR / "main.py", *(FIRMWARE_DIR / "fd").rglob("*.py")]):
        h.update(path.relative_to(FIRMWARE_DIR).as_posix().encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:10]


def default_bundle_dir(chip: str = "esp32") -> Path:
    """Where the default bundle of this firmware (version, sources) and chip lives, built or not."""
    return data_dir() / "firmware" / f"fleetdesk-{firmware_version()}-{_source_digest()}-{chip}"


def default_bundle(chip: str = "esp32") -> Path:
    """The default bundle's directory, built now if it is not there yet (blocking: ~1 s)."""
    out = default_bundle_dir(chip)
    if not (out / "manifest.json").is_file():
        tmp = out.with_name(out.name + ".building")
        build_bundle(tmp, chip=chip)  # a half-built bundle never sits where a finished one is looked for
        if out.exists():  # another process built it meanwhile
            return out
        tmp.rename(out)
    return out


def _size(n: int) -> str:
    return f"{n / (1 << 20):.1f} MB" if n >= 1 << 20 else f"{n // 1024} KB"


def summary(bundle: Bundle) -> str:
    """"esp32 · firmware 1.0.0 · 4 parts: bootloader, partition-table, app, vfs · 1.6 MB · needs 4MB flash"."""
    names = ", ".join(p.name for p in bundle.parts)
    total = sum(p.size for p in bundle.parts)
    text = (f"{bundle.chip} · firmware {bundle.version or '?'} · {len(bundle.parts)} part(s): {names} · "
            f"{_size(total)} · needs {bundle.flash_size} flash")
    if bundle.vfs_offset is None:
        text += " · no vfs: boards get no identity from this station"
    return text


def describe(path: str) -> str:
    """:func:`summary` of the bundle at ``path``.

    Raises:
        BundleError: not a bundle (the message names why and what to pick).
    """
    return summary(load_bundle(Path(path).expanduser()))
