"""End to end over the in-process bleak backend: scanner -> PoP -> Wi-Fi -> cloud -> files -> commit,
against the firmware's Config mode running under the MicroPython unix port (and CPython)."""

from __future__ import annotations

import json

import pytest
from ble_testlib import POP

from fleetdesk.ble.certs import cert_der, key_der
from fleetdesk.ble.client import ProvisioningClient, ProvisioningError
from fleetdesk.ble.scanner import scan
from fleetdesk.virtual.ble_link import VirtualBleakClient, VirtualBleakScanner

pytestmark = pytest.mark.timeout(90)


async def _find(dev, timeout=5.0, **filters):
    found = await scan(timeout=timeout, backend=VirtualBleakScanner, stop_when=lambda f: f.address == dev.address,
                       **filters)
    return next((f for f in found if f.address == dev.address), None)


async def _provision(prov, certs, endpoint="localhost", thing="thing-ble-1"):
    nets = await prov.wifi_scan()
    assert [n["ssid"] for n in nets] == ["fieldnet", "guest"]
    result = await prov.set_wifi("fieldnet", "secret123")
    assert result["connected"] is True
    await prov.set_cloud(endpoint, 8883, thing, region="eu-west-1")
    await prov.send_file("ca", cert_der(certs.ca))
    await prov.send_file("cert", cert_der(certs.cert))
    await prov.send_file("key", key_der(certs.key))
    return await prov.commit()


@pytest.mark.slow
@pytest.mark.parametrize("interpreter", ["micropython", "cpython"])
async def test_scan_provision_commit(start_device, certs, interpreter):
    dev = start_device(interpreter)
    found = await _find(dev)
    assert found is not None, "scanner did not see the virtual board"
    assert found.name == dev.name and found.provisioned is False and found.rssi < 0
    progress = []
    async with ProvisioningClient(found.device, POP, backend=VirtualBleakClient, mtu=185,
                                  progress=lambda f, n, t: progress.append((f, n, t))) as prov:
        assert prov.info["name"] == dev.name
        assert (await _provision(prov, certs))["committed"] is True
    assert dev.wait_exit(15) == 0, dev.output()
    cfg = dev.config()
    assert cfg["thing_name"] == "thing-ble-1" and cfg["endpoint"] == "localhost" and cfg["port"] == 8883
    assert cfg["wifi"] == {"ssid": "fieldnet", "password": "secret123"} and cfg["pop"] == POP
    assert (dev.fs / "certs" / "cert.der").read_bytes() == cert_der(certs.cert)
    assert (dev.fs / "certs" / "key.der").read_bytes() == key_der(certs.key)
    assert (dev.fs / "certs" / "ca.der").read_bytes() == cert_der(certs.ca)
    done = {f: n for f, n, t in progress if n == t}
    assert set(done) == {"ca", "cert", "key"}
    assert "COMMITTED" in dev.output()


@pytest.mark.slow
async def test_scanner_filters(start_device):
    dev = start_device(mac="240ac4000010", config={"thing_name": "old", "endpoint": "x"})
    assert (await _find(dev)).provisioned is True
    assert await _find(dev, 1.0, provisioned=False) is None
    assert await _find(dev, 1.0, min_rssi=-20) is None
    assert await _find(dev, 1.0, name_prefix="XX-") is None
    assert (await _find(dev, min_rssi=-90, name_prefix="FD-")) is not None


@pytest.mark.slow
async def test_resume_after_link_drop_halfway(start_device, certs):
    dev = start_device()
    found = await _find(dev)
    key = key_der(certs.key)
    state = {"dropped": False, "resumed_at": None}
    prov_box = []

    def progress(name, n, total):
        if name == "key" and not state["dropped"] and n >= total // 2:
            state["dropped"] = True
            state["dropped_at"] = n
            prov_box[0].client._backend.simulate_link_loss()
        elif name == "key" and state["dropped"] and state["resumed_at"] is None:
            state["resumed_at"] = n

    prov = ProvisioningClient(found.device, POP, backend=VirtualBleakClient, mtu=100, progress=progress)
    prov_box.append(prov)
    try:
        await prov.connect()
        await prov.set_wifi("fieldnet", "secret123")
        await prov.set_cloud("localhost", 8883, "thing-resume")
        await prov.send_file("ca", cert_der(certs.ca))
        await prov.send_file("cert", cert_der(certs.cert))
        await prov.send_file("key", key)
        assert state["dropped"] and prov.reconnects == 1
        # resumed where the device said, not from zero
        assert state["resumed_at"] > state["dropped_at"]
        status = await prov.status()
        assert status["files"]["key"] == {"size": len(key), "next": len(key), "done": True}
        assert status["wifi"]["ssid"] == "fieldnet"  # staged state survived the drop
        await prov.commit()
    finally:
        await prov.close()
    assert dev.wait_exit(15) == 0
    assert (dev.fs / "certs" / "key.der").read_bytes() == key


@pytest.mark.slow
async def test_wrong_pop_is_refused_and_changes_nothing(start_device, certs):
    dev = start_device()
    before = (dev.fs / "config.json").read_text()
    found = await _find(dev)
    async with ProvisioningClient(found.device, POP, backend=VirtualBleakClient) as prov:
        await prov.set_wifi("fieldnet", "secret123")
    with pytest.raises(ProvisioningError, match="wrong proof-of-possession") as err:
        async with ProvisioningClient(found.device, "guessed-pop", backend=VirtualBleakClient):
            pass
    assert err.value.code == "pop" and "proof-of-possession" in err.value.advice
    async with ProvisioningClient(found.device, POP, backend=VirtualBleakClient) as prov:
        status = await prov.status()
    assert status["wifi"]["ssid"] == "fieldnet" and status["files"] == {}
    assert (dev.fs / "config.json").read_text() == before
    assert not (dev.fs / "certs").exists()
    assert dev.alive()


@pytest.mark.slow
async def test_repeated_wrong_pop_locks_auth_for_a_while(start_device):
    dev = start_device()
    for _ in range(5):
        with pytest.raises(ProvisioningError, match="wrong proof-of-possession"):
            async with ProvisioningClient(dev.address, f"guess-{_}", backend=VirtualBleakClient):
                pass
    with pytest.raises(ProvisioningError, match="too many wrong proof-of-possession attempts") as err:
        async with ProvisioningClient(dev.address, POP, backend=VirtualBleakClient):
            pass
    assert err.value.code == "locked" and dev.alive()


@pytest.mark.slow
async def test_bad_crc_chunk_is_resent(start_device, certs):
    dev = start_device()
    found = await _find(dev)
    seen = []
    async with ProvisioningClient(found.device, POP, backend=VirtualBleakClient, mtu=64,
                                  progress=lambda f, n, t: seen.append(n)) as prov:
        prov.corrupt_next_chunk = True
        cert = cert_der(certs.cert)
        await prov.send_file("cert", cert)
        status = await prov.status()
    assert seen[0] == 0, "the corrupted first chunk must be refused (next stays 0)"
    assert seen[-1] == len(cert)
    assert status["files"]["cert"]["done"] is True


@pytest.mark.slow
@pytest.mark.parametrize("case", ["mismatch", "expired", "unresolvable", "wifi", "missing"])
async def test_commit_refused(start_device, certs, case):
    dev = start_device()
    before = (dev.fs / "config.json").read_text()
    found = await _find(dev)
    async with ProvisioningClient(found.device, POP, backend=VirtualBleakClient) as prov:
        await prov.set_wifi("fieldnet", "wrong-pass" if case == "wifi" else "secret123")
        await prov.set_cloud("no-such-host.invalid" if case == "unresolvable" else "localhost", 8883, "t1")
        await prov.send_file("ca", cert_der(certs.ca))
        if case != "missing":
            await prov.send_file("cert", cert_der(certs.expired_cert if case == "expired" else certs.cert))
        await prov.send_file("key", key_der(certs.other_key if case == "mismatch" else certs.key))
        with pytest.raises(ProvisioningError) as err:
            await prov.commit()
    assert err.value.code == "commit"
    text = str(err.value)
    expect = {"mismatch": "certificate and private key do not match", "expired": "certificate expired",
              "unresolvable": "does not resolve", "wifi": "wrong password", "missing": "cert not received"}[case]
    assert expect in text, text
    assert [e["check"] for e in err.value.reply["errors"]] == [
        {"mismatch": "cert_key", "expired": "cert_key", "unresolvable": "endpoint", "wifi": "wifi", "missing": "cert"}[case]]
    assert dev.alive(), "the device must stay in Config mode"
    assert (dev.fs / "config.json").read_text() == before
    assert json.loads(before).get("thing_name") is None
