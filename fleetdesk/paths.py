"""Where things live: the data the package carries (firmware, resources) and the per-user app dirs.

The checkout keeps ``firmware/`` and ``resources/`` at the top level (the product card's layout);
the build maps them into the package as ``fleetdesk._data.firmware`` and
``fleetdesk._data.resources`` (setup.py), so a wheel, an editable install and a PyInstaller
bundle all find them through ``importlib.resources``, never relative to a checkout.
"""

from __future__ import annotations

import importlib.resources
import os
from pathlib import Path

import platformdirs

APP_NAME = "fleetdesk"


def package_data_dir(name: str) -> Path:
    """The directory of data package ``fleetdesk._data.<name>`` as a real path.

    Raises:
        RuntimeError: the package is not on the file system (a zip import), or incomplete.
    """
    root = importlib.resources.files(f"fleetdesk._data.{name}")
    path = Path(str(root))
    if not path.is_dir():
        raise RuntimeError(f"fleetdesk's {name} data is not a directory ({root}): reinstall fleetdesk")
    return path


FIRMWARE_DIR = package_data_dir("firmware")
RESOURCES_DIR = package_data_dir("resources")


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


def home_relative(path: str | Path) -> str:
    """``path`` as a user reads it: under the home directory as ``~/...`` (shorter, and the same
    on every account), anything else unchanged."""
    text = str(path)
    home = str(Path.home())
    if home not in ("", os.sep) and (text == home or text.startswith(home + os.sep)):
        return "~" + text[len(home):]
    return text


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
