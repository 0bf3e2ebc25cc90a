"""Init/Config/Idle modes and link loss (Wi-Fi, broker) under the MicroPython unix port."""

from __future__ import annotations

import asyncio
import json

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def _blank_fs(tmp_path, files: dict[str, str]):
    from devfs import write_app

    fs = tmp_path / "fs"
    fs.mkdir()
    write_app(fs)
    for name, text in files.items():
        (fs / name).write_text(text)
    return fs


async def _run_until(fs, chip, needle, timeout=20.0, interpreter="micropython"):
    from fleetdesk.virtual.runtime import launch_firmware

    out = bytearray()
    h = launch_firmware(fs, mac="24:0a:c4:00:00:99", chip=chip, console=out.extend, interpreter=interpreter)
    try:
        for _ in range(int(timeout / 0.05)):
            if needle.encode() in out:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # a window for an exit or reboot that must not happen
        assert h.running and h.pid is not None, "the firmware must stay up, not exit or reboot-loop"
        assert h.boots == 1
        return out.decode(errors="replace")
    finally:
        h.stop()


async def test_esp8266_without_config_says_why_and_waits(tmp_path):
    # CPython: the logic only; a stock ESP8266's 38 KB heap does not hold this firmware (below)
    fs = _blank_fs(tmp_path, {})
    text = await _run_until(fs, "esp8266", "has no Bluetooth", interpreter="cpython")
    assert "mode init -> config" in text and "esp8266 has no Bluetooth" in text


async def test_esp8266_stock_heap_is_too_small_and_the_board_says_so(tmp_path):
    from fleetdesk.virtual.runtime import launch_firmware

    fs = _blank_fs(tmp_path, {})
    out = bytearray()
    h = launch_firmware(fs, mac="24:0a:c4:00:00:98", chip="esp8266", console=out.extend)
    try:
        assert h.heap == 38 * 1024
        h.wait(20)
        text = out.decode(errors="replace")
        assert not h.running, "38 KB must not hold the firmware:\n" + text
        assert "E: out of memory: this firmware needs a larger GC heap" in text and "MemoryError" in text
    finally:
        h.stop()


async def test_esp32_without_config_starts_ble_config(tmp_path):
    fs = _blank_fs(tmp_path, {})
    text = await _run_until(fs, "esp32", "BLE config")
    assert "mode init -> config" in text


async def test_broken_config_json_goes_idle_with_reason(tmp_path):
    fs = _blank_fs(tmp_path, {"config.json": "{thing_name: oops"})
    text = await _run_until(fs, "esp32", "idle:")
    assert "init failed: config.json is not valid JSON" in text


async def test_corrupt_settings_fall_back_to_defaults(tmp_path):
    fs = _blank_fs(tmp_path, {"config.json": "{}", "settings.json": "\x00\x01garbage"})
    text = await _run_until(fs, "esp32", "refresh 10000 ms")
    assert "settings.json unreadable" in text and "mode init -> config" in text


async def test_wifi_loss_buffers_telemetry_and_flushes_on_return(cloud, device_factory, tmp_path):
    air = tmp_path / "air.json"
    air.write_text(json.dumps({"lab": "secret"}))
    dev = device_factory(settings={"refresh": 1000, "backoff_max_ms": 1000},
                         extra={"wifi": {"ssid": "lab", "password": "secret"}},
                         env={"FD_AIR_FILE": str(air), "FD_DHT_SEED": "7"})
    first = await cloud.expect("dt/dev1/env")
    air.write_text("{}")  # the access point disappears
    await dev.wait_console("Wi-Fi lost")
    await asyncio.sleep(0.5)  # whatever was already on its way has arrived
    m = cloud.mark()
    await asyncio.sleep(3.0)  # a window in which nothing may arrive (3 refresh periods)
    assert not [t for t, _ in cloud.msgs[m:] if t == "dt/dev1/env"], "nothing can arrive while offline"
    await dev.wait_console("no AP found")
    air.write_text(json.dumps({"lab": "secret"}))
    await dev.wait_console("online as dev1", count=2)
    last = await cloud.expect("dt/dev1/env", lambda d: True, since=m)

    def seqs_now():
        return sorted(json.loads(p)["seq"] for t, p in cloud.msgs if t == "dt/dev1/env")

    deadline = asyncio.get_running_loop().time() + 30
    while (seqs := seqs_now()) != list(range(seqs[0], seqs[-1] + 1)):  # the offline buffer drains
        if asyncio.get_running_loop().time() > deadline:
            break  # the assert below shows the gap
        await asyncio.sleep(0.1)
    assert seqs[0] == first["seq"] and last["seq"] > first["seq"]
    # readings taken offline were buffered and delivered: no gap in the sequence
    # (failed DHT reads produce no reading, so the sequence itself has no holes)
    assert seqs == list(range(seqs[0], seqs[-1] + 1)), seqs


async def test_broker_restart_device_reconnects(tmp_path, device_factory, broker):
    import ssl

    import aiomqtt

    from tlsbroker import start_broker

    dev = device_factory(settings={"refresh": 1000, "backoff_max_ms": 1000})
    await dev.wait_console("online as dev1")
    broker.stop()
    await dev.wait_console("connection lost")
    await asyncio.sleep(1.5)  # the device retries against a dead broker for a while (backoff, not a condition)
    restarted = start_broker(tmp_path / "b2", broker.ca, port=broker.port)
    broker.proc = restarted.proc  # the module's broker again (its fixture stops it)
    creds = broker.ca.issue("watcher")
    (tmp_path / "w.pem").write_bytes(creds.cert_pem + creds.key_pem)
    ctx = ssl.create_default_context(cafile=str(restarted.ca_file))
    ctx.load_cert_chain(tmp_path / "w.pem")
    async with aiomqtt.Client("localhost", broker.port, identifier="watcher", tls_context=ctx) as c:
        await c.subscribe("dt/dev1/env")
        msg = await asyncio.wait_for(anext(aiter(c.messages)), 20)
        assert "seq" in json.loads(msg.payload)
    await dev.wait_console("online as dev1", count=2)
    assert dev.handle.boots == 1
