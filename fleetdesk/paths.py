"""Where things live: the source tree (firmware, resources) and the per-user app dirs."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP_NAME = "fleetdesk"
REPO_ROOT = Path(__file__).resolve().parent.parent
FIRMWARE_DIR = REPO_ROOT / "firmware"
RESOURCES_DIR = REPO_ROOT / "resources"


def data_dir() -> Path:
    """Per-user data dir (production DB, key files, telemetry). FLEETDESK_DATA_DIR overrides."""
    override = os.environ.get("FLEETDESK_DATA_DIR")
    path = Path(override) if override else Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))
    path.mkdir(parents=True, exist_ok=True)
    return path


def ble_registry_dir() -> Path:
    """Where virtual boards advertise over BLE: one file per advertising board.

    The app's scanner reads it and a virtual board's firmware writes it (the board passes
    this path to the firmware as FLEETDESK_BLE_REGISTRY), so both sides agree wherever
    platformdirs puts the data dir (XDG_DATA_HOME, macOS, Windows). FLEETDESK_BLE_REGISTRY
    overrides.
    """
    override = os.environ.get("FLEETDESK_BLE_REGISTRY")
    path = Path(override) if override else data_dir() / "virtual-ble"
    path.mkdir(parents=True, exist_ok=True)
    return path


def sandbox_state_dir() -> Path:
    """Default sandbox state dir. FLEETDESK_SANDBOX_DIR overrides."""
    override = os.environ.get("FLEETDESK_SANDBOX_DIR")
    return Path(override) if override else data_dir() / "sandbox"


def config_dir() -> Path:
    """Per-user config dir (profiles). FLEETDESK_CONFIG_DIR overrides."""
    override = os.environ.get("FLEETDESK_CONFIG_DIR")
    path = Path(override) if override else Path(platformdirs.user_config_dir(APP_NAME, appauthor=False))
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_private(path: Path, data: bytes) -> None:
    """Write a secret (private key, PoP) readable by the owner only (0600), atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
