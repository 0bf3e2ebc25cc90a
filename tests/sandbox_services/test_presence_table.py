"""Presence payloads and the connectivity table (pure, no broker)."""

from __future__ import annotations

import asyncio

from fleetdesk.sandbox.context import ClientEvent
from fleetdesk.sandbox.presence import Presence


async def test_payloads_versions_and_debounced_save(tmp_path):
    sent = []
    p = Presence(lambda t, m: sent.append((t, m)), tmp_path / "presence.json")
    for i in range(50):  # a burst of connects is one file write, a second later
        p.on_event(ClientEvent("connected", f"c{i}", "cn", "10.0.0.1:5000", "", 1000 + i, f"c{i}", "abc"))
    assert not (tmp_path / "presence.json").exists()
    p.on_event(ClientEvent("disconnected", "c1", "cn", "", "MQTT_KEEP_ALIVE_TIMEOUT", 2000, "c1", "abc"))
    topic, msg = sent[1]
    assert topic == "$aws/events/presence/connected/c1"
    assert msg["ipAddress"] == "10.0.0.1" and msg["principalIdentifier"] == "abc" and msg["versionNumber"] == 1
    topic, gone = sent[-1]
    assert topic == "$aws/events/presence/disconnected/c1"
    assert gone["disconnectReason"] == "MQTT_KEEP_ALIVE_TIMEOUT" and gone["clientInitiatedDisconnect"] is False
    assert gone["sessionIdentifier"] == msg["sessionIdentifier"]
    assert p.connectivity("c2") == {"thingName": "c2", "connected": True, "timestamp": 1.002, "clientId": "c2",
                                    "sourceIp": "10.0.0.1", "sourcePort": 5000}
    deadline = asyncio.get_running_loop().time() + 10
    while not (tmp_path / "presence.json").exists():  # the debounced save (about a second after the burst)
        assert asyncio.get_running_loop().time() < deadline, "the presence table was never saved"
        await asyncio.sleep(0.05)
    again = Presence(lambda t, m: None, tmp_path / "presence.json")  # after a sandbox restart
    assert again.connectivity("c2")["connected"] is False
    again.on_event(ClientEvent("connected", "c2", "cn", "10.0.0.1:5001", "", 3000, "c2", "abc"))
    assert again.table["c2"].version == 2
