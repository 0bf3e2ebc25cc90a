"""Presence: AWS lifecycle events for device connections, and GetThingConnectivityData's source.

mosquitto does not publish ``$aws/events/presence/connected|disconnected/<clientId>``; the
sandbox core parses the broker's connection log into ``ClientEvent``s on ``ctx.events``
and this service turns each into AWS's payload (clientId, timestamp in ms, eventType,
sessionIdentifier, principalIdentifier, versionNumber, ipAddress / disconnectReason,
clientInitiatedDisconnect), and keeps the latest state per client for
``GetThingConnectivityData`` (route in :mod:`api_data`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SAVE_DELAY_S = 1.0


@dataclass
class Connectivity:
    """Latest known connection state of one client id."""

    client_id: str
    connected: bool
    timestamp_ms: int
    version: int
    session: str = ""
    principal: str = ""
    address: str = ""
    disconnect_reason: str = ""
    thing_name: str = ""


class Presence:
    """Lifecycle event builder + connectivity table.

    Args:
        publish: ``publish(topic, dict)``.
        path: JSON file where the table is kept (version numbers survive a restart).
    """

    def __init__(self, publish, path: Path | None = None) -> None:
        self._publish = publish
        self.path = path
        self.table: dict[str, Connectivity] = {}
        self._save_pending = False
        if path and path.exists():
            try:
                for d in json.loads(path.read_text()):
                    c = Connectivity(**d)
                    if c.connected:  # the sandbox restarted: nobody is connected any more
                        c.connected, c.disconnect_reason = False, "SERVER_INITIATED_DISCONNECT"
                    self.table[c.client_id] = c
            except (ValueError, TypeError):
                log.warning("presence: ignoring unreadable %s", path)

    def save(self) -> None:
        """Write the table now."""
        self._save_pending = False
        if self.path:
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps([asdict(c) for c in self.table.values()]))
            tmp.replace(self.path)

    def _save(self) -> None:
        """Write the table soon: at most once a second (a fleet connecting at once is one write)."""
        if self._save_pending:
            return
        self._save_pending = True
        try:
            asyncio.get_running_loop().call_later(SAVE_DELAY_S, self.save)
        except RuntimeError:  # no loop (tests calling directly): write now
            self.save()

    def on_event(self, event: Any) -> None:
        """Handle a core ``ClientEvent`` (kind connected|disconnected)."""
        kind = getattr(event, "kind", None)
        if kind not in ("connected", "disconnected"):
            return
        cid = event.client_id
        prev = self.table.get(cid)
        principal = getattr(event, "certificate_id", None) or getattr(event, "identity", "") or ""
        if kind == "connected":
            c = Connectivity(cid, True, int(event.ts_ms), (prev.version + 1) if prev else 1,
                             session=str(uuid.uuid4()), principal=principal, address=event.address or "",
                             thing_name=getattr(event, "thing_name", None) or "")
            payload = {"clientId": cid, "timestamp": c.timestamp_ms, "eventType": "connected",
                       "sessionIdentifier": c.session, "principalIdentifier": c.principal,
                       "ipAddress": c.address.rsplit(":", 1)[0] if c.address else "", "versionNumber": c.version}
        else:
            if prev is None:
                prev = Connectivity(cid, False, int(event.ts_ms), 1, session=str(uuid.uuid4()), principal=principal)
            reason = event.reason or "CONNECTION_LOST"
            c = Connectivity(cid, False, int(event.ts_ms), prev.version, session=prev.session,
                             principal=prev.principal or principal, address=prev.address,
                             disconnect_reason=reason,
                             thing_name=getattr(event, "thing_name", None) or prev.thing_name)
            payload = {"clientId": cid, "timestamp": c.timestamp_ms, "eventType": "disconnected",
                       "sessionIdentifier": c.session, "principalIdentifier": c.principal,
                       "clientInitiatedDisconnect": reason == "CLIENT_INITIATED_DISCONNECT",
                       "disconnectReason": reason, "versionNumber": c.version}
        self.table[cid] = c
        self._save()
        self._publish(f"$aws/events/presence/{kind}/{cid}", payload)

    def connectivity(self, thing: str) -> dict:
        """GetThingConnectivityData's answer for a thing (client id == thing name, else by thing)."""
        c = self.table.get(thing)
        if c is None:
            matches = [x for x in self.table.values() if x.thing_name == thing]
            c = max(matches, key=lambda x: x.timestamp_ms) if matches else None
        if c is None:
            return {"thingName": thing, "connected": False}
        out: dict[str, Any] = {"thingName": thing, "connected": c.connected, "timestamp": c.timestamp_ms / 1000.0,
                               "clientId": c.client_id}
        if not c.connected and c.disconnect_reason:
            out["disconnectReason"] = c.disconnect_reason
        if c.connected and c.address:
            ip, _, port = c.address.rpartition(":")
            out["sourceIp"] = ip
            if port.isdigit():
                out["sourcePort"] = int(port)
        return out


class _Running:
    def __init__(self, link, unlisten, presence: Presence) -> None:
        self.link, self.unlisten, self.presence = link, unlisten, presence

    async def stop(self) -> None:
        self.unlisten()
        self.presence.save()
        await self.link.stop()


async def start(ctx: Any) -> _Running:
    """Start presence (``ctx.extras["presence"]``)."""
    from fleetdesk.sandbox.mqtt_link import MqttLink

    link = MqttLink(ctx.internal_mqtt, "presence", [], lambda t, p: None)
    await link.start()
    presence = Presence(lambda t, p: link.publish(t, p), Path(ctx.state_dir) / "presence.json")
    ctx.extras["presence"] = presence
    unlisten = ctx.events.listen(presence.on_event)
    return _Running(link, unlisten, presence)
