"""The app's cloud side kept in step with the active profile (no Qt).

:class:`CloudRuntime` starts what the profile's backend needs locally (the sandbox child,
or attaches to one already running for the same state dir; nothing for AWS), then opens the
app's :class:`~fleetdesk.cloud.session.CloudSession`. It reports through three callbacks,
all called on the asyncio loop that runs it (in the app: qasync on the Qt thread; the GUI's
adapter is ``fleetdesk_gui.app.CloudController``):

* ``on_state(LauncherState)``: starting / running / failed / stopped, for the status bar;
* ``on_connection(StateEvent)``: the app's MQTT connection (connecting, failed: reason);
* ``on_session(session | None)``: a connected session to show, or none any more.

Example::

    rt = CloudRuntime(on_state=print, on_connection=print, on_session=print)
    await rt.apply(Profiles.load().current)
    ...
    await rt.shutdown()           # stops a sandbox child we started; an attached one keeps running
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from fleetdesk.cloud.backend import LauncherState, get_cloud_backend
from fleetdesk.config import Profile

if TYPE_CHECKING:
    from fleetdesk.cloud.session import CloudSession


log = logging.getLogger(__name__)


def _ignore(*_args: Any) -> None:
    return None


class CloudRuntime:
    """Owns the local service (if any) and the app's session for one profile at a time.

    Args:
        state_dir_override: ``--state-dir`` from the command line, if any.
        connect: also open the app's CloudSession once the cloud is up.
        port_base: ``--port-base`` for a sandbox we start (0 = free ports; None = its default).
        on_state, on_connection, on_session: see the module docstring.
    """

    def __init__(self, state_dir_override: str | None = None, connect: bool = True, port_base: int | None = None, *,
                 on_state: Callable[[LauncherState], None] = _ignore,
                 on_connection: Callable[[Any], None] = _ignore,
                 on_session: Callable[[Any], None] = _ignore) -> None:
        self.state_dir_override = state_dir_override
        self.connect = connect
        self.port_base = port_base
        self.on_state, self.on_connection, self.on_session = on_state, on_connection, on_session
        self.service: Any = None  # what the backend started (a SandboxLauncher for the sandbox)
        self.session: CloudSession | None = None
        self._lock = asyncio.Lock()

    def resolve(self, profile: Profile) -> Profile:
        """The profile with ``--state-dir`` applied (a sandbox profile's state dir)."""
        if self.state_dir_override:
            return dataclasses.replace(profile, state_dir=str(self.state_dir_override))
        return profile

    def state_dir(self, profile: Profile) -> Path | None:
        """The sandbox state dir the profile uses (None for a profile without one)."""
        return getattr(get_cloud_backend(self.resolve(profile)), "state_dir", None)

    @property
    def launcher(self):
        """The service we run (a ``SandboxLauncher`` for the sandbox), or None."""
        return self.service

    async def apply(self, profile: Profile) -> None:
        """Start/attach what the profile's backend needs, stopping what the last one had."""
        async with self._lock:
            profile = self.resolve(profile)
            backend = get_cloud_backend(profile)
            current = self.service
            if (current is not None and current.state_dir is not None
                    and current.state_dir == getattr(backend, "state_dir", None)
                    and current.state.phase == "running"):
                return
            await self._stop()
            self.service = backend.service(port_base=self.port_base, on_state=self._state)
            state = await self.service.start()
            if state.phase == "running" and not backend.billed:
                await self._set_up(backend)
            if state.phase == "running" and self.connect:
                await self._start_session(profile)

    async def _set_up(self, backend: Any) -> None:
        """A local cloud (the sandbox) gets the telemetry rule, its DynamoDB table and the device
        policy at once (what ``fleetdesk cloud setup`` makes, but fleet indexing): it costs nothing,
        and a new user's first Device page should not open on "run cloud setup". Fleet indexing is
        left as it is (it switches the Fleet page to paging the index, for large fleets: turn it on
        with ``fleetdesk cloud setup``). A billed account is only set up when its operator asks. A
        failure is logged, never fatal: the pages say what is missing."""
        from fleetdesk.cloud import account_setup

        def run() -> list[str]:
            done = account_setup.apply(backend.client("iot"), backend.client("dynamodb"), indexing=False)
            return [s.what for s in done.steps if s.action != "ok" and not s.what.startswith("fleet indexing")]

        try:
            made = await asyncio.to_thread(run)
        except Exception as exc:  # noqa: BLE001 - botocore/network: the pages explain what is missing
            log.warning("could not set up %s for the dashboard (%s); run `fleetdesk cloud setup`",
                        backend.label or "the cloud", exc)
            return
        if made:
            log.info("set up %s for the dashboard: %s", backend.label or "the cloud", "; ".join(made))

    def _state(self, state: LauncherState) -> None:
        service = self.service
        sd = getattr(service, "state_dir", None)
        if state.phase == "running" and not state.endpoint.get("state_dir") and sd is not None:
            state = LauncherState(state.phase, {**state.endpoint, "state_dir": str(sd)}, state.reason, state.attached)
        self.on_state(state)

    async def _start_session(self, profile: Profile) -> None:
        """Connect the app's CloudSession; a failure goes to ``on_connection``, never raises."""
        from fleetdesk.cloud.connection import State, StateEvent
        from fleetdesk.cloud.session import CloudSession
        from fleetdesk.errors import FleetdeskError

        self.on_connection(StateEvent(State.CONNECTING))
        session = None
        try:
            session = CloudSession(profile)
            await session.start()
        except (FleetdeskError, OSError) as exc:
            if session is not None:
                with contextlib.suppress(Exception):
                    await session.stop()
            self.on_connection(StateEvent(State.FAILED, reason=getattr(exc, "message", str(exc))))
            return
        self.session = session
        self.on_session(session)
        with contextlib.suppress(Exception):
            await session.refresh_groups()

    async def _stop(self) -> None:
        if self.session is not None:
            session, self.session = self.session, None
            self.on_session(None)
            with contextlib.suppress(Exception):
                await session.stop()
        if self.service is not None:
            service, self.service = self.service, None
            await service.stop()

    async def shutdown(self) -> None:
        """Stop the session and the sandbox child we started (an attached one keeps running)."""
        async with self._lock:
            await self._stop()
