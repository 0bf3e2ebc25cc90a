"""The firmware (MicroPython unix port) against a plain mTLS mosquitto; the test plays the
cloud side (shadow delta, jobs, RPC) with an independent MQTT client (aiomqtt)."""

from __future__ import annotations

import asyncio

import pytest

from fleetdesk.fleet.otapkg import firmware_package, sha256_hex

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

SH = "$aws/things/dev1/shadow"
JOBS = "$aws/things/dev1/jobs"


def reported(pred):
    return lambda d: pred(d.get("state", {}).get("reported", {}))


@pytest.mark.parametrize("interpreter", ["micropython", "cpython"])
async def test_boot_reports_shadow_and_publishes_telemetry(cloud, device_factory, interpreter):
    dev = device_factory(interpreter=interpreter, settings={"refresh": 1000})
    first = await cloud.expect(f"{SH}/update", reported(lambda r: "firmware_version" in r))
    r = first["state"]["reported"]
    assert r["firmware_version"] == "1.0.0" and r["refresh"] == 1000 and r["on"] is False
    await cloud.expect(f"{SH}/get")
    await cloud.expect(f"{JOBS}/start-next")
    env = await cloud.expect("dt/dev1/env")
    assert set(env) == {"temperature", "humidity", "ts", "seq"}
    assert isinstance(env["temperature"], int) and 0 <= env["temperature"] <= 50
    assert isinstance(env["humidity"], int) and 20 <= env["humidity"] <= 90
    second = await cloud.expect("dt/dev1/env", lambda d: d["seq"] > env["seq"], since=cloud.mark() - 1)
    assert second["ts"] >= env["ts"]
    await cloud.expect(f"{SH}/update", reported(lambda r: "temperature" in r and "humidity" in r))
    await cloud.expect("dev1/logs", lambda d: "online as dev1" in d["msg"])
    assert "mode init -> normal" in dev.console


async def test_delta_applied_bad_values_reported_no_reboot_loop(cloud, device_factory):
    dev = device_factory(settings={"refresh": 1000})
    await cloud.expect(f"{JOBS}/start-next")
    m = cloud.mark()
    await cloud.send(f"{SH}/update/delta", {"version": 2, "state": {"on": True, "refresh": 2000}})
    d = await cloud.expect(f"{SH}/update", reported(lambda r: r.get("refresh") == 2000), since=m)
    assert d["state"]["reported"]["on"] is True and d["state"]["reported"]["error"] is None
    assert dev.settings()["refresh"] == 2000

    m = cloud.mark()
    await cloud.send(f"{SH}/update/delta", {"version": 3, "state": {"refresh": 5}})
    d = await cloud.expect(f"{SH}/update", reported(lambda r: r.get("error")), since=m)
    assert "out of range" in d["state"]["reported"]["error"]
    assert "refresh" not in d["state"]["reported"]
    m = cloud.mark()
    await cloud.send(f"{SH}/update/delta", b"{not json")
    d = await cloud.expect(f"{SH}/update", reported(lambda r: r.get("error")), since=m)
    assert "malformed delta" in d["state"]["reported"]["error"]
    m = cloud.mark()
    await cloud.send(f"{SH}/update/delta", {"version": 4, "state": {"colour": "red", "on": "yes"}})
    d = await cloud.expect(f"{SH}/update", reported(lambda r: r.get("error")), since=m)
    assert "unknown key 'colour'" in d["state"]["reported"]["error"]
    assert "on must be true or false" in d["state"]["reported"]["error"]
    assert dev.settings()["refresh"] == 2000

    # reboot counter: reboots once when it increases, never again for the same value
    m = cloud.mark()
    await cloud.send(f"{SH}/update/delta", {"version": 5, "state": {"reboot": 1}})
    await cloud.expect(f"{SH}/update", reported(lambda r: r.get("reboot") == 1), since=m)
    await dev.wait_console("boot #2")
    m = cloud.mark()
    await cloud.expect(f"{JOBS}/start-next", since=m)
    await cloud.send(f"{SH}/update/delta", {"version": 6, "state": {"reboot": 1}})
    await cloud.expect(f"{SH}/update", reported(lambda r: r.get("reboot") == 1), since=m)
    await asyncio.sleep(1.5)  # a window for a second reboot that must not happen
    assert dev.handle.boots == 2 and "boot #3" not in dev.console
    assert dev.settings()["refresh"] == 2000 and dev.settings()["reboot"] == 1


async def test_config_job_and_rpc(cloud, device_factory):
    dev = device_factory()
    await cloud.expect(f"{JOBS}/start-next")
    m = cloud.mark()
    await cloud.send(f"{JOBS}/start-next/accepted", {"execution": {
        "jobId": "cfg-1", "status": "IN_PROGRESS",
        "jobDocument": {"operation": "config", "settings": {"refresh": 3000, "on": True}}}})
    d = await cloud.expect(f"{JOBS}/cfg-1/update", since=m)
    assert d["status"] == "SUCCEEDED" and d["statusDetails"]["refresh"] == "3000"
    await cloud.send(f"{JOBS}/start-next/accepted", {"execution": {
        "jobId": "cfg-2", "jobDocument": {"operation": "config", "settings": {"refresh": 1}}}})
    d = await cloud.expect(f"{JOBS}/cfg-2/update", since=m)
    assert d["status"] == "FAILED" and "out of range" in d["statusDetails"]["reason"]
    await cloud.send(f"{JOBS}/start-next/accepted", {"execution": {
        "jobId": "x-3", "jobDocument": {"operation": "format-disk"}}})
    d = await cloud.expect(f"{JOBS}/x-3/update", since=m)
    assert d["status"] == "FAILED" and "unknown operation" in d["statusDetails"]["reason"]

    await cloud.send("dev1/rpc", {"id": 1, "method": "Sys.GetInfo"})
    r = await cloud.expect("dev1/rpc/resp", lambda d: d.get("id") == 1, since=m)
    assert r["result"]["fw_version"] == "1.0.0" and r["result"]["mac"] == "240AC4000011"
    assert r["result"]["arch"] == "esp32"
    await cloud.send("dev1/rpc", {"id": 2, "method": "Config.Set", "args": {"config": {"refresh": 4000}}})
    r = await cloud.expect("dev1/rpc/resp", lambda d: d.get("id") == 2, since=m)
    assert r["result"]["applied"] == {"refresh": 4000}
    await cloud.send("dev1/rpc", {"id": 3, "method": "Config.Get"})
    r = await cloud.expect("dev1/rpc/resp", lambda d: d.get("id") == 3, since=m)
    assert r["result"]["refresh"] == 4000 and r["result"]["on"] is True
    await cloud.send("dev1/rpc", {"id": 4, "method": "FS.List", "args": {"path": "/"}})
    r = await cloud.expect("dev1/rpc/resp", lambda d: d.get("id") == 4, since=m)
    names = {e["name"] for e in r["result"]}
    assert {"config.json", "main.py", "fd", "certs"} <= names
    await cloud.send("dev1/rpc", {"id": 5, "method": "FS.List", "args": {"path": "/../.."}})
    r = await cloud.expect("dev1/rpc/resp", lambda d: d.get("id") == 5, since=m)
    assert r["error"]["code"] == -32602, r
    await cloud.send("dev1/rpc", {"id": 6, "method": "Nope.Nothing"})
    r = await cloud.expect("dev1/rpc/resp", lambda d: d.get("id") == 6, since=m)
    assert r["error"]["code"] == -32601
    assert dev.settings()["refresh"] == 4000


async def test_ota_job_switches_version_bad_hash_and_truncation_keep_old(cloud, device_factory, files):
    dev = device_factory()
    await cloud.expect(f"{JOBS}/start-next")
    pkg = firmware_package("1.1.0")
    files.files["/fw-1.1.0.pkg"] = pkg

    async def job(job_id, url, sha, version):
        m = cloud.mark()
        await cloud.send(f"{JOBS}/start-next/accepted", {"execution": {"jobId": job_id, "jobDocument": {
            "operation": "ota", "url": url, "sha256": sha, "version": version}}})
        return await cloud.expect(f"{JOBS}/{job_id}/update", lambda d: d["status"] != "IN_PROGRESS",
                                  since=m, timeout=40)

    d = await job("ota-bad", files.url("/fw-1.1.0.pkg"), "0" * 64, "1.1.0")
    assert d["status"] == "FAILED" and "sha256 mismatch" in d["statusDetails"]["reason"]
    d = await job("ota-trunc", files.url("/trunc/fw-1.1.0.pkg"), sha256_hex(pkg), "1.1.0")
    assert d["status"] == "FAILED" and "truncated" in d["statusDetails"]["reason"]
    d = await job("ota-404", files.url("/missing.pkg"), sha256_hex(pkg), "1.1.0")
    assert d["status"] == "FAILED" and "HTTP 404" in d["statusDetails"]["reason"]
    files.files["/app.bin"] = b"\xe9" + bytes(5000)
    d = await job("ota-bin", files.url("/app.bin"), sha256_hex(files.files["/app.bin"]), "1.1.0")
    assert d["status"] == "FAILED" and "no OTA app partition" in d["statusDetails"]["reason"]
    files.files["/junk.bin"] = b"junk" * 100
    d = await job("ota-junk", files.url("/junk.bin"), sha256_hex(files.files["/junk.bin"]), "1.1.0")
    assert d["status"] == "FAILED" and "unknown image format" in d["statusDetails"]["reason"]
    assert dev.settings()["firmware_version"] == "1.0.0" and dev.handle.boots == 1

    d = await job("ota-good", files.url("/fw-1.1.0.pkg"), sha256_hex(pkg), "1.1.0")
    assert d["status"] == "SUCCEEDED" and d["statusDetails"]["firmware_version"] == "1.1.0", (d, dev.console[-1500:])
    await dev.wait_console("fleetdesk-fw 1.1.0 on esp32")  # the new slot's code is running
    assert dev.handle.boots == 2
    await cloud.expect(f"{SH}/update", reported(lambda r: r.get("firmware_version") == "1.1.0"))


async def test_shadow_firmware_version_triggers_ota_once(cloud, device_factory, files):
    dev = device_factory()
    await cloud.expect(f"{JOBS}/start-next")
    pkg = firmware_package("1.3.0")
    files.files["/fw-1.3.0.pkg"] = pkg
    m = cloud.mark()
    bad = {"firmware_version": "1.3.0", "firmware_url": files.url("/fw-1.3.0.pkg"), "firmware_sha256": "1" * 64}
    await cloud.send(f"{SH}/update/delta", {"version": 7, "state": bad})
    d = await cloud.expect(f"{SH}/update", reported(lambda r: "OTA to 1.3.0 failed" in (r.get("error") or "")),
                           since=m, timeout=40)
    assert "sha256 mismatch" in d["state"]["reported"]["error"]
    # the same desired again (e.g. after a reconnect): no second download, no reboot loop
    m = cloud.mark()
    await cloud.send(f"{SH}/update/delta", {"version": 8, "state": bad})
    d = await cloud.expect(f"{SH}/update", reported(lambda r: r.get("error")), since=m)
    assert "already failed" in d["state"]["reported"]["error"]
    assert dev.handle.boots == 1 and dev.settings()["firmware_version"] == "1.0.0"

    good = dict(bad, firmware_sha256=sha256_hex(pkg))
    await cloud.send(f"{SH}/update/delta", {"version": 9, "state": good})
    await dev.wait_console("fleetdesk-fw 1.3.0 on esp32", timeout=40)
    r = await cloud.expect(f"{SH}/update", reported(lambda r: r.get("firmware_version") == "1.3.0"), since=m)
    assert r["state"]["reported"]["firmware_url"] == good["firmware_url"]
    assert dev.handle.boots == 2
