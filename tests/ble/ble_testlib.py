"""Paths and constants shared by the BLE tests (imported as a plain module)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MICROPYTHON = ROOT / ".venv" / "bin" / "micropython"
DEVICE_MAIN = ROOT / "tests" / "ble" / "device_main.py"
VECTORS = ROOT / "tests" / "vectors" / "ble_v1.json"
INTERPRETERS = {"micropython": str(MICROPYTHON), "cpython": sys.executable}
NETS = {"fieldnet": "secret123", "guest": ""}
POP = "pop-7f3a-19c2"
