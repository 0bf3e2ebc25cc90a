"""Build a device filesystem directory (what a flashed vfs holds) for off-board runs."""

from __future__ import annotations

import json
from pathlib import Path

from fleetdesk.paths import FIRMWARE_DIR


def write_app(root: Path, *, compiled: bool = True) -> None:
    """The app files exactly as a bundle ships them (main.py + fd/*.mpy) into `root`."""
    from fleetdesk.boards.bundle import firmware_files

    for path, data in firmware_files(FIRMWARE_DIR, compiled=compiled).items():
        dest = root / path.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)


def make_device_fs(root: Path, *, thing: str | None, endpoint: str, port: int, ca_der: bytes,
                   cert_der: bytes | None = None, key_der: bytes | None = None,
                   settings: dict | None = None, extra: dict | None = None, compiled: bool = True) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    write_app(root, compiled=compiled)
    certs = root / "certs"
    certs.mkdir(exist_ok=True)
    (certs / "ca.der").write_bytes(ca_der)
    if cert_der is not None:
        (certs / "cert.der").write_bytes(cert_der)
        (certs / "key.der").write_bytes(key_der)
    cfg = {"endpoint": endpoint, "port": port, "region": "us-east-1"}
    if thing:
        cfg["thing_name"] = thing
    cfg.update(extra or {})
    (root / "config.json").write_text(json.dumps(cfg))
    if settings:
        (root / "settings.json").write_text(json.dumps(settings))
    return root
