"""establish_connection: the retry/backoff table and its final error (real bleak, virtual backend)."""

from __future__ import annotations

import pytest
from ble_testlib import POP

from fleetdesk.ble.client import ProvisioningClient
from fleetdesk.ble.connect import BleConnectError, backoff_time, classify, establish_connection
from fleetdesk.ble.scanner import scan
from fleetdesk.virtual.ble_link import VirtualBleakClient, VirtualBleakScanner


async def test_missing_device_fails_after_capped_attempts_with_advice(ble_registry):
    slept: list[float] = []

    async def sleep(s: float) -> None:
        slept.append(s)

    with pytest.raises(BleConnectError) as err:
        await establish_connection("24:0A:C4:00:00:99", backend=VirtualBleakClient, max_attempts=3, sleep=sleep)
    assert "after 3 attempts" in str(err.value) and "was not found" in str(err.value)
    assert "Config mode" in err.value.advice
    assert slept == [0.5, 1.0]
    assert err.value.__cause__ is not None


def test_policy_table_classifies_known_errors():
    assert backoff_time(Exception("ESP_GATT_CONN_FAIL_ESTABLISH"), 1) == 0.25
    assert backoff_time(Exception("out of connection slots"), 2) == 4.0
    assert backoff_time(Exception("org.bluez.Error.NotFound"), 9) == 2.0
    assert "power-cycle" in classify(Exception("something odd")).advice


@pytest.mark.slow
async def test_busy_board_is_refused_then_connects_when_free(start_device):
    dev = start_device()
    found = await scan(5, backend=VirtualBleakScanner, stop_when=lambda f: f.address == dev.address)
    first = ProvisioningClient(dev.address, POP, backend=VirtualBleakClient)
    await first.connect()
    slept: list[float] = []

    async def sleep(s: float) -> None:
        slept.append(s)
        await first.close()  # the other central goes away during the backoff

    # a device seen in an earlier scan, now taken by another central: refused, not "missing"
    client = await establish_connection(found[0].device, backend=VirtualBleakClient, sleep=sleep)
    try:
        assert client.is_connected
        assert slept == [2.0], "a busy board backs off on the out-of-slots row"
    finally:
        await client.disconnect()
