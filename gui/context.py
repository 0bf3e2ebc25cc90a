"""What every page gets: the active profile, the cloud/sandbox state, the QSettings.

Pages receive one :class:`AppContext` in ``create_page(ctx)``. It lives on the Qt thread;
its signals are the way pages learn about profile and sandbox changes (never poll).
"""

from __future__ import annotations

from PySide6.QtCore import QObject, QSettings, Signal

from fleetdesk.config import Profile, Profiles
from fleetdesk.sandbox.launcher import LauncherState


class AppContext(QObject):
    """Shared app state for pages.

    Attributes:
        profiles: all profiles (``profiles.current`` is the active one).
        settings: the app's QSettings (window geometry, page choices).
        cloud: the sandbox/cloud state (a LauncherState; for AWS: phase "running"
            once configured, endpoint {"mqtt_host", "mqtt_port", "region"}).
        live: the LiveFleet (fleet changes on a timer, telemetry batches, shadow events,
            connection state); ``live.session`` is the CloudSession once connected.
    """

    profile_changed = Signal(object)  # Profile
    cloud_state_changed = Signal(object)  # LauncherState
    navigate = Signal(str, object)  # page title, payload (e.g. ("Device", "thing-1"))

    def __init__(self, profiles: Profiles, settings: QSettings, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.profiles = profiles
        self.settings = settings
        self.cloud = LauncherState()
        from fleetdesk_gui.live import LiveFleet

        self.live = LiveFleet(self)

    @property
    def session(self):
        """The running CloudSession (None until connected)."""
        return self.live.session

    @property
    def profile(self) -> Profile:
        """The active profile."""
        return self.profiles.current

    def set_cloud_state(self, state: LauncherState) -> None:
        """Record and announce a new cloud/sandbox state (Qt thread only)."""
        self.cloud = state
        self.cloud_state_changed.emit(state)

    def set_profiles(self, profiles: Profiles) -> None:
        """Replace the profiles (after Settings saved them) and announce the active one."""
        self.profiles = profiles
        self.profile_changed.emit(profiles.current)

    def sandbox_info(self):
        """The running sandbox as ``fleetdesk.sandbox.info.SandboxInfo`` (None if not running,
        or when the cloud is not a sandbox: only a sandbox's state has a state dir)."""
        from fleetdesk.sandbox.info import SandboxInfo

        if self.cloud.phase != "running":
            return None
        state_dir = self.cloud.endpoint.get("state_dir")
        return SandboxInfo.load(state_dir) if state_dir else None
