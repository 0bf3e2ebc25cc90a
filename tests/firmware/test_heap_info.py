"""Sys.GetInfo reports the board's GC heap: free after a collect, the lowest free seen and the
largest block it can still hand out, within the chip's stock budget."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


async def test_sys_getinfo_reports_heap_free_minimum_and_largest_block(cloud, device_factory):
    from fleetdesk.virtual.runtime import hal_footprint, unix_heapsize

    dev = device_factory("heap1", settings={"refresh": 1000})
    await cloud.expect("$aws/things/heap1/jobs/start-next")
    m = cloud.mark()
    await cloud.send("heap1/rpc", {"id": 1, "method": "Sys.GetInfo"})
    r = (await cloud.expect("heap1/rpc/resp", lambda d: d.get("id") == 1, since=m))["result"]
    assert dev.handle.heap == 112 * 1024  # a stock ESP32 without PSRAM
    # the unix port's heap: the chip's budget scaled for 64-bit, plus the hal shims' own part
    assert r["ram_total"] <= unix_heapsize(dev.handle.heap) and r["ram_total"] > hal_footprint()
    assert 0 < r["ram_largest_free"] <= r["ram_free"] < r["ram_total"]
    assert 0 < r["ram_min_free"] <= r["ram_free"]
