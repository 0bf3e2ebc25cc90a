"""Reliable BLE connects: a retry/backoff table and one entry point (bleak-retry-connector style).

The policy is data: error substrings map to a backoff class; attempts are capped and each
attempt has its own timeout. The final failure is a ``BleConnectError`` naming the device,
the attempt count and what to do, chained to the last bleak error.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Callable

from bleak import BleakClient, BleakScanner
from bleak.backends.client import BaseBleakClient
from bleak.backends.device import BLEDevice
from bleak.exc import BleakError

from fleetdesk.errors import BleError

MAX_CONNECT_ATTEMPTS = 4
ATTEMPT_TIMEOUT = 20.0

# (error substrings, backoff seconds per attempt index, advice) — first match wins.
TRANSIENT_ERRORS = ("le-connection-abort-by-local", "br-connection-canceled", "ESP_GATT_CONN_FAIL_ESTABLISH",
                    "ESP_GATT_CONN_TERMINATE_PEER_USER", "ESP_GATT_ERROR", "Software caused connection abort",
                    "Connection refused", "Not connected", "TimeoutError")
OUT_OF_SLOTS_ERRORS = ("ESP_GATT_CONN_CONN_CANCEL", "out of connection slots", "No buffer space",
                       "not connectable")
DEVICE_MISSING_ERRORS = ("was not found", "org.bluez.Error.NotFound", "Device not found")


@dataclass(frozen=True)
class Backoff:
    """One row of the policy table."""

    errors: tuple[str, ...]
    delays: tuple[float, ...]
    advice: str


POLICY: tuple[Backoff, ...] = (
    Backoff(DEVICE_MISSING_ERRORS, (0.5, 1.0, 2.0),
            "Make sure the board is powered, in Config mode (advertising FD-xxxxxx) and within a few metres."),
    Backoff(OUT_OF_SLOTS_ERRORS, (2.0, 4.0, 4.0),
            "The board already has a central connected: close other apps (phones) connected to it."),
    Backoff(TRANSIENT_ERRORS, (0.25, 0.5, 1.0),
            "Radio trouble: move closer to the board and retry."),
)
DEFAULT = Backoff((), (0.5, 1.0, 2.0), "Retry; if it keeps failing, power-cycle the board.")


class BleConnectError(BleError):
    """Connecting failed after every attempt the policy allows."""


def classify(exc: BaseException) -> Backoff:
    """The policy row for an error (by its text, as bleak-retry-connector does)."""
    text = f"{type(exc).__name__}: {exc}"
    for row in POLICY:
        if any(s in text for s in row.errors):
            return row
    return DEFAULT


def backoff_time(exc: BaseException, attempt: int) -> float:
    """Seconds to wait after failed ``attempt`` (1-based)."""
    delays = classify(exc).delays
    return delays[min(attempt - 1, len(delays) - 1)]


async def find_by_address(address: str, timeout: float, **scanner_kwargs: Any) -> BLEDevice | None:
    """Scan until ``address`` advertises (None after ``timeout`` s).

    Used instead of handing bleak a bare address: bleak's BlueZ ``connect(address)`` looks the device
    up with ``find_device_by_filter``, which starts discovery *before* it registers its callback, so
    an advertisement that BlueZ reports at once (a device object re-created as discovery starts, as
    after the board went out of range) is missed and the attempt waits its whole timeout. A scanner
    built with its detection callback has it registered before discovery starts.
    """
    found: asyncio.Future[BLEDevice] = asyncio.get_running_loop().create_future()

    def detected(dev: BLEDevice, _adv: Any) -> None:
        if dev.address.upper() == address.upper() and not found.done():
            found.set_result(dev)

    async with BleakScanner(detected, **scanner_kwargs):
        try:
            return await asyncio.wait_for(asyncio.shield(found), timeout)
        except asyncio.TimeoutError:
            return None


async def establish_connection(
    device: BLEDevice | str,
    *,
    backend: type[BaseBleakClient] | None = None,
    disconnected_callback: Callable[[BleakClient], None] | None = None,
    max_attempts: int = MAX_CONNECT_ATTEMPTS,
    attempt_timeout: float = ATTEMPT_TIMEOUT,
    sleep: Callable[[float], Any] = asyncio.sleep,
    **client_kwargs: Any,
) -> BleakClient:
    """Connect to ``device`` with retries; returns a connected ``BleakClient``.

    Args:
        device: a BLEDevice from a scan (preferred) or an address.
        backend: bleak client backend class (None = the platform's; VirtualBleakClient for virtual boards).
        disconnected_callback: called on an unsolicited disconnect.
        max_attempts: cap on connect attempts.
        attempt_timeout: seconds per attempt.
        sleep: injectable sleep (tests).
        **client_kwargs: passed to ``BleakClient`` (e.g. ``mtu=185`` for the virtual backend).

    Raises:
        BleConnectError: every attempt failed; chained to the last error.
    """
    name = getattr(device, "name", None) or getattr(device, "address", device)
    last: BaseException | None = None
    for attempt in range(1, max_attempts + 1):
        target: BLEDevice | str | None = device
        if isinstance(device, str) and backend is None:  # system radio: find it without bleak's lookup race
            bluez = {"bluez": client_kwargs["bluez"]} if "bluez" in client_kwargs else {}
            try:
                target = await find_by_address(device, attempt_timeout, **bluez)
                missing: BaseException = BleakError(f"Device with address {device} was not found")
            except (BleakError, OSError, EOFError) as exc:  # no adapter, bus gone
                target, missing = None, exc
            if target is None:
                last = missing
                if attempt < max_attempts:
                    await sleep(backoff_time(last, attempt))
                continue
        assert target is not None  # a lookup that found nothing continued above
        client = BleakClient(target, disconnected_callback=disconnected_callback, backend=backend,
                             timeout=attempt_timeout, **client_kwargs)
        try:
            await asyncio.wait_for(client.connect(), attempt_timeout)
            return client
        except (BleakError, OSError, asyncio.TimeoutError, EOFError) as exc:
            last = exc
            try:
                await client.disconnect()
            except Exception:  # noqa: BLE001 - best effort cleanup of a half-open link
                pass
            if attempt < max_attempts:
                await sleep(backoff_time(exc, attempt))
    assert last is not None
    raise BleConnectError(f"could not connect to {name} after {max_attempts} attempts ({str(last) or type(last).__name__})",
                          classify(last).advice) from last
