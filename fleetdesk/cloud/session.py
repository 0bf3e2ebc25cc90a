"""From a profile to a working cloud session: MQTT settings, boto3 clients, and
:class:`CloudSession`, the one object the GUI and the CLI hold.

What differs between the sandbox and AWS (the MQTT login, the boto3 clients) comes from the
profile's :class:`fleetdesk.cloud.backend.CloudBackend`; this module only assembles the
services over them.

Example::

    session = CloudSession(Profiles.load().current)
    await session.start()                 # connect, subscribe, load things + presence
    for name in session.fleet.take_changes(): ...
    await session.shadows.update("t1", desired={"on": True}, version=7)
    await session.stop()
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Literal

from fleetdesk.cloud.backend import get_cloud_backend
from fleetdesk.cloud.connection import Connection
from fleetdesk.cloud.control import ControlPlane
from fleetdesk.cloud.logs import Logs
from fleetdesk.cloud.presence import Presence
from fleetdesk.cloud.rpc import Rpc
from fleetdesk.cloud.settings import ConnectionSettings
from fleetdesk.cloud.shadows import Shadows
from fleetdesk.cloud.telemetry import Telemetry
from fleetdesk.config import Profile
from fleetdesk.cloud.fleet_state import FleetState
from fleetdesk.store.telemetry import DEFAULT_RETENTION_DAYS, TelemetryStore

log = logging.getLogger(__name__)


def app_settings(profile: Profile, *, ephemeral: bool = False, **overrides: Any) -> ConnectionSettings:
    """How the app connects to MQTT for this profile (its backend's :meth:`~CloudBackend.mqtt_settings`)."""
    return get_cloud_backend(profile).mqtt_settings(ephemeral=ephemeral, **overrides)


class CloudSession:
    """Everything cloud for one profile: connection, fleet model, history and services.

    Attributes:
        backend: the profile's :class:`~fleetdesk.cloud.backend.CloudBackend`.
        conn: the MQTT :class:`Connection` (``conn.add_state_listener`` for the status bar).
        control: boto3 :class:`ControlPlane` (things, groups, jobs, connectivity).
        fleet: the :class:`FleetState` (poll ``take_changes()`` on a timer).
        store: the :class:`TelemetryStore` (history, export), or None.
        telemetry, shadows, presence, rpc, logs: the services.

    Args:
        profile: the active profile.
        settings: MQTT settings (default: the backend's ``mqtt_settings()``).
        control: control plane (default: the backend's ``control_plane()``).
        store: telemetry history; ``None`` = open the default one (retention from
            ``profile.extra["retention_days"]``, default 30 days); ``False`` = none.
    """

    def __init__(self, profile: Profile, *, settings: ConnectionSettings | None = None,
                 control: ControlPlane | None = None, store: TelemetryStore | None | Literal[False] = None,
                 fleet: FleetState | None = None) -> None:
        self.profile = profile
        self.backend = get_cloud_backend(profile)
        self.conn = Connection(settings or self.backend.mqtt_settings())
        self.control = control or self.backend.control_plane()
        self.fleet = fleet or FleetState()
        retention = (profile.extra or {}).get("retention_days", DEFAULT_RETENTION_DAYS)
        self.store = TelemetryStore(retention_days=retention) if store is None else (store or None)
        self.telemetry = Telemetry(self.conn, self.store, self.fleet)
        self.shadows = Shadows(self.conn, self.fleet, data=getattr(self.control, "data", None))
        self.presence = Presence(self.conn, self.fleet, self.control)
        self.rpc = Rpc(self.conn)
        self.logs = Logs(self.conn)
        self.indexed = False  # set by start(): the account has a fleet index (the dashboard runs on it)

    async def _has_index(self) -> bool:
        """True if the account has a fleet index (GetIndexingConfiguration; any error: no)."""
        iot = getattr(self.control, "iot", None)
        if iot is None:
            return False
        try:
            cfg = await asyncio.to_thread(iot.get_indexing_configuration)
        except Exception as exc:  # noqa: BLE001 - no permission, offline: the old way still works
            log.info("no fleet index (%s): loading the registry and subscribing every device's telemetry", exc)
            return False
        return (cfg.get("thingIndexingConfiguration") or {}).get("thingIndexingMode", "OFF") != "OFF"

    async def start(self, *, connect_timeout: float = 15.0, load_registry: bool = True,
                    use_index: bool | None = None) -> None:
        """Connect, subscribe the streams, then load things, groups and presence.

        With a fleet index (``use_index`` None = ask the account) the session neither lists the
        registry nor subscribes every device's telemetry (``dt/+/env``): the Fleet page pages the
        index, history comes from the telemetry table, and :meth:`watch_telemetry` follows the
        one device a page shows. So the app's connection stays far below IoT Core's 100
        publishes/s per connection whatever the fleet size.

        Raises:
            ConnectFailed: the broker cannot be reached or refused the login.
            ControlPlaneError: ListThings failed.
        """
        self.indexed = await self._has_index() if use_index is None else use_index
        # Telemetry is subscribed before connecting: a persistent session's backlog arrives right
        # after CONNACK and must find its handler (store before ack), not be acked unstored.
        if not self.indexed:
            await self.telemetry.start()
        await self.conn.start()
        await self.conn.wait_connected(connect_timeout)
        self.shadows.scoped = self.indexed  # on the index: only the shadows the app asks about or shows
        if self.indexed:
            # a persistent session made before the index still carries the fleet-wide filters:
            # drop them (the rule keeps every reading in the telemetry table meanwhile)
            from fleetdesk.cloud.topics import LOGS_FILTER, PRESENCE_FILTER, shadow_filters

            for f in [self.telemetry.topic_filter, LOGS_FILTER, PRESENCE_FILTER, *shadow_filters()]:
                await self.conn._unsubscribe(f)
        await self.shadows.start()
        await self.rpc.start()
        if not self.indexed:  # every device's log lines; the Device page follows the open one's itself
            await self.logs.start()
        names: list[str] = []
        if load_registry and not self.indexed:
            things = await self.control.list_things()
            self.fleet.apply_registry(things)
            names = [t["thingName"] for t in things if t.get("thingName")]
        if self.store is not None:
            for name, s in self.store.latest().items():
                if name in self.fleet.things and self.fleet.things[name].sample_ts is None:
                    t = self.fleet.things[name]
                    t.temperature, t.humidity, t.sample_ts, t.seq = s.temperature, s.humidity, s.ts, s.seq
        self.presence.scoped = self.indexed  # connectivity from the index; presence only for what a page shows
        await self.presence.start(names)

    async def watch_telemetry(self, thing: str):
        """Follow one device's readings (``dt/<thing>/env``, stored and fanned out like the rest)
        and, on the index, its shadow and presence events.

        Returns:
            An async function that stops following it.
        """
        from fleetdesk.cloud.topics import telemetry_topic

        remove = await self.conn.subscribe(telemetry_topic(thing), self.telemetry._on_message, qos=1,
                                           manual_ack=self.store is not None)
        if self.shadows.scoped:
            await self.shadows.follow(thing, pin=True)
        unwatch = await self.presence.watch(thing) if self.presence.scoped else None  # its online state, live

        async def stop() -> None:
            await remove()
            if self.shadows.scoped:
                await self.shadows.unfollow(thing)
            if unwatch is not None:
                await unwatch()
        return stop

    async def load_shadows(self, concurrency: int = 8) -> None:
        """Read every known thing's classic shadow once (firmware and shadow-version columns),
        over HTTPS and paced (:meth:`Shadows.get_many`: none of it on the app's connection);
        later changes arrive through ``/update/documents``. Missing shadows are skipped."""
        await self.shadows.get_many(list(self.fleet.things), concurrency=concurrency)

    async def refresh_groups(self) -> None:
        """Load every thing's groups into the fleet model (one call per group)."""
        groups = await self.control.list_groups()
        member: dict[str, list[str]] = {}
        for g in groups:
            for t in await self.control.things_in_group(g["groupName"]):
                member.setdefault(t, []).append(g["groupName"])
        for name in self.fleet.things:
            self.fleet.set_groups(name, member.get(name, []))

    async def stop(self) -> None:
        """Store what is pending, disconnect, close the history."""
        try:
            await self.presence.stop()
            await self.rpc.stop()
            await self.logs.stop()
            await self.shadows.stop()
            # Keep the telemetry subscription in the persistent session: the broker queues what
            # devices send while the app is closed, and the next start stores it.
            await self.telemetry.stop(unsubscribe=False)
        except Exception as exc:  # noqa: BLE001 - still disconnect
            log.warning("stopping services: %s", exc)
        await self.conn.stop()
        if self.store is not None:
            self.store.close()
