"""LiveFleet: the GUI's single tap on the cloud session, batched for the UI.

One QTimer (2 Hz) calls ``FleetState.take_changes()`` once and emits ``changed(names)`` to
every page (the fleet table, the device page): never a repaint per message. Telemetry
batches, shadow events and connection states from the cloud layer arrive through
fleetdesk_gui.bridge.post and are re-emitted as Qt signals.
"""

from __future__ import annotations

import shiboken6
from PySide6.QtCore import QObject, QTimer, Signal

from fleetdesk_gui import bridge

TICK_MS = 500


class LiveFleet(QObject):
    """Fan-out of a :class:`fleetdesk.cloud.session.CloudSession` to Qt pages.

    Signals:
        changed(set[str]): things whose state changed since the last tick.
        samples(list[Sample]): a telemetry batch (already stored).
        shadow_event(ShadowEvent): a delta/documents/accepted/deleted event.
        connection(StateEvent): the MQTT connection state.
        session_changed(object): a session was attached (the session) or detached (None).
    """

    changed = Signal(object)
    samples = Signal(object)
    shadow_event = Signal(object)
    connection = Signal(object)
    session_changed = Signal(object)

    def __init__(self, parent: QObject | None = None, interval_ms: int = TICK_MS) -> None:
        super().__init__(parent)
        self.session = None
        self.ticks = 0
        self._removers: list = []
        self.timer = QTimer(self)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self.tick)

    @property
    def fleet(self):
        """The session's FleetState (None without a session)."""
        return self.session.fleet if self.session is not None else None

    def attach(self, session) -> None:
        """Start fanning out ``session``'s events (call on the Qt thread)."""
        self.detach()
        self.session = session
        self._removers = [
            session.telemetry.add_listener(lambda batch: bridge.post(self._emit, session, "samples", batch)),
            session.shadows.add_listener(lambda ev: bridge.post(self._emit, session, "shadow_event", ev)),
            session.conn.add_state_listener(lambda st: bridge.post(self._emit, session, "connection", st)),
        ]
        self.timer.start()
        self.session_changed.emit(session)
        self.connection.emit(session.conn.state)
        self.tick()

    def follow_session(self, fn) -> None:
        """Call ``fn(session)`` now (None without one) and each time a session attaches or detaches:
        what a page needs to show the current session from the start."""
        self.session_changed.connect(fn)
        fn(self.session)

    def _emit(self, session, signal: str, value) -> None:
        # Queued callbacks may outlive this object or its session: drop them then.
        if session is self.session and shiboken6.isValid(self):
            getattr(self, signal).emit(value)

    def detach(self) -> None:
        """Stop listening to the current session (it is not stopped here)."""
        for remove in self._removers:
            remove()
        self._removers = []
        if self.session is not None:
            self.session = None
            self.timer.stop()
            self.session_changed.emit(None)

    def tick(self) -> None:
        """Emit the things changed since the last tick (the timer calls this)."""
        self.ticks += 1
        fleet = self.fleet
        if fleet is None:
            return
        names = fleet.take_changes()
        if names:
            self.changed.emit(names)
