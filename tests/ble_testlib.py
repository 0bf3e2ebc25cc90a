"""Paths and constants shared by the BLE tests in tests/ble and tests/gui (imported as a plain module)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MICROPYTHON = ROOT / ".venv" / "bin" / "micropython"
DEVICE_MAIN = ROOT / "tests" / "ble" / "device_main.py"
VECTORS = ROOT / "tests" / "vectors" / "ble_v1.json"
INTERPRETERS = {"micropython": str(MICROPYTHON), "cpython": sys.executable}
NETS = {"fieldnet": "secret123", "guest": ""}
POP = "pop-7f3a-19c2"


async def wait_discovering(adapter: str = "hci0", timeout: float = 10.0) -> None:
    """Wait until BlueZ(oo) reports ``adapter`` discovering (a scan was started), or fail saying so."""
    import asyncio

    from dbus_fast import BusType, Message, MessageType
    from dbus_fast.aio import MessageBus

    bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            reply = await bus.call(Message(destination="org.bluez", path=f"/org/bluez/{adapter}",
                                           interface="org.freedesktop.DBus.Properties", member="Get",
                                           signature="ss", body=["org.bluez.Adapter1", "Discovering"]))
            if reply.message_type != MessageType.ERROR and reply.body[0].value:
                return
            assert asyncio.get_running_loop().time() < deadline, f"{adapter} never started discovering"
            await asyncio.sleep(0.02)
    finally:
        bus.disconnect()
