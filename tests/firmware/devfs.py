"""Build a device filesystem directory (what a flashed vfs holds) for off-board runs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from fleetdesk.paths import FIRMWARE_DIR


def make_device_fs(root: Path, *, thing: str | None, endpoint: str, port: int, ca_der: bytes,
                   cert_der: bytes | None = None, key_der: bytes | None = None,
                   settings: dict | None = None, extra: dict | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(FIRMWARE_DIR / "main.py", root / "main.py")
    shutil.copytree(FIRMWARE_DIR / "fd", root / "fd", dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__"))
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
