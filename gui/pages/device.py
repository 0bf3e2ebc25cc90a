"""Device page: everything for one thing on one page.

Live DHT11 charts (history from the telemetry store, then live batches), export of the
visible range, the shadow (desired/reported/delta + editor, 409-safe), RPC, the log
stream, and the serial console when the board is on a local (or virtual) port. Blocking work (SQLite, files) runs in worker threads via fleetdesk_gui.bridge.
"""

from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from fleetdesk_gui import bridge
from fleetdesk_gui.context import AppContext
from fleetdesk_gui.widgets.device_log import DeviceLog
from fleetdesk_gui.widgets.error_text import error_text
from fleetdesk_gui.widgets.live_plot import LivePlot
from fleetdesk_gui.widgets.rpc_panel import RpcPanel
from fleetdesk_gui.widgets.serial_console import SerialConsole
from fleetdesk_gui.widgets.shadow_editor import ShadowEditor

HISTORY_S = 86_400


class DevicePage(QWidget):
    """One thing: charts, shadow, RPC, log."""

    def __init__(self, ctx: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.setObjectName("DevicePage")
        self.thing: str | None = None
        self.shadow_name: str | None = None
        self._telemetry_unsub = None  # the open thing's dt/<thing>/env while the session uses the fleet index
        self.exports = 0

        layout = QVBoxLayout(self)
        top = QHBoxLayout()
        top.addWidget(QLabel("<h2>Device</h2>"))
        self.thing_combo = QComboBox()
        self.thing_combo.setObjectName("thingCombo")
        self.thing_combo.setEditable(True)
        self.thing_combo.setMinimumWidth(220)
        self.thing_combo.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        top.addWidget(self.thing_combo)
        self.info = QLabel("Pick a thing.")
        self.info.setObjectName("deviceInfo")
        self.info.setWordWrap(True)  # long notes wrap instead of widening the window
        top.addWidget(self.info, 1)
        layout.addLayout(top)

        split = QSplitter(Qt.Orientation.Horizontal)
        left = QWidget()
        lv = QVBoxLayout(left)
        lv.setContentsMargins(0, 0, 0, 0)
        self.plot = LivePlot(left)
        lv.addWidget(self.plot, 1)
        ex = QHBoxLayout()
        self.csv_button = QPushButton("Export CSV…")
        self.json_button = QPushButton("Export JSON…")
        self.export_label = QLabel("")
        ex.addWidget(self.csv_button)
        ex.addWidget(self.json_button)
        ex.addWidget(self.export_label, 1)
        lv.addLayout(ex)
        split.addWidget(left)

        self.tabs = QTabWidget()
        self.shadow = ShadowEditor()
        self.tabs.addTab(self.shadow, "Shadow")
        self.rpc = RpcPanel()
        self.rpc_method, self.rpc_args, self.rpc_reply = self.rpc.rpc_method, self.rpc.rpc_args, self.rpc.rpc_reply
        self.rpc.rpc_button.clicked.connect(self.call_rpc)
        self.tabs.addTab(self.rpc, "RPC")
        self.log_view = DeviceLog()
        self.tabs.addTab(self.log_view, "Log")
        self.console = SerialConsole()
        self.tabs.addTab(self.console, "Console")
        self.tabs.currentChanged.connect(
            lambda i: self.console.rescan(self.thing) if self.tabs.widget(i) is self.console else None)
        split.addWidget(self.tabs)
        split.setSizes([700, 520])
        layout.addWidget(split, 1)

        self.thing_combo.activated.connect(lambda _i: self.open_target(self.thing_combo.currentText()))
        line = self.thing_combo.lineEdit()
        assert line is not None  # the combo is editable
        line.returnPressed.connect(lambda: self.open_target(self.thing_combo.currentText()))
        self.csv_button.clicked.connect(lambda: self._ask_export("csv"))
        self.json_button.clicked.connect(lambda: self._ask_export("json"))
        self.shadow.send_requested.connect(self._send_desired)
        self.shadow.reload_requested.connect(self.load_shadow)
        self.shadow.shadow_selected.connect(self._shadow_selected)
        ctx.live.samples.connect(self._on_samples)
        ctx.live.shadow_event.connect(self._on_shadow_event)
        ctx.live.changed.connect(self._on_changed)
        ctx.live.follow_session(self._session_changed)

    # -- session / thing ----------------------------------------------------------------
    @property
    def session(self):
        return self.ctx.live.session

    def _session_changed(self, session) -> None:
        self._refresh_things()
        if session is None:
            self.info.setText("Not connected: see the status bar; choose or fix a profile in Settings.")
        elif self.thing:
            self.open_target(self.thing)

    def _refresh_things(self) -> None:
        fleet = self.ctx.live.fleet
        names = sorted(fleet.things) if fleet else []
        have = [self.thing_combo.itemText(i) for i in range(self.thing_combo.count())]
        if names != have:
            text = self.thing_combo.currentText()
            self.thing_combo.blockSignals(True)
            self.thing_combo.clear()
            self.thing_combo.addItems(names)
            self.thing_combo.setEditText(text)
            self.thing_combo.blockSignals(False)

    def open_target(self, thing: str) -> None:
        """Show ``thing``: history, shadow, named shadows, log stream."""
        thing = (thing or "").strip()
        if not thing:
            return
        changed = thing != self.thing
        self.thing = thing
        self.thing_combo.setEditText(thing)
        self._update_info()
        if changed:
            self.shadow_name = None
            self.shadow.set_named_shadows([])
            self.shadow.reset()
            self.export_label.setText("")
            self.log_view.clear()
            self.rpc_reply.clear()
            for key in list(self.plot.keys()):
                self.plot.series(key).buffer.clear()
        session = self.session
        if session is None:
            return
        self.load_history()
        self.load_shadow()
        bridge.submit(session.control.named_shadows(thing),
                      lambda names, e: self.shadow.set_named_shadows(names) if e is None and thing == self.thing else None)
        self._subscribe_log(thing)
        self._watch_telemetry(thing)

    def _watch_telemetry(self, thing: str | None) -> None:
        """With a fleet index the session follows no device's telemetry: follow the open one's."""
        if self._telemetry_unsub is not None:
            unsub, self._telemetry_unsub = self._telemetry_unsub, None
            bridge.submit(_maybe_await(unsub()))
        session = self.session
        if session is None or not thing or not getattr(session, "indexed", False):
            return

        def done(unsub, error) -> None:
            if error is not None:
                self.export_label.setText(f"Live readings unavailable: {error_text(error)}")
            elif thing == self.thing and session is self.session:
                # two watches of the same thing can be under way (the page reopened it): keep
                # the newest and stop the older one, or its pin and subscription leak
                older, self._telemetry_unsub = self._telemetry_unsub, unsub
                if older is not None:
                    bridge.submit(_maybe_await(older()))
            else:
                bridge.submit(_maybe_await(unsub()))

        bridge.submit(session.watch_telemetry(thing), done)

    def _update_info(self) -> None:
        fleet = self.ctx.live.fleet
        t = fleet.things.get(self.thing) if fleet and self.thing else None
        if t is None:
            if not self.thing:
                self.info.setText("Pick a thing.")
            elif fleet is not None and fleet.things and not getattr(self.session, "indexed", False):
                # the registry is loaded (without a fleet index): a typo, or another profile's
                self.info.setText(f"{self.thing}: not a known thing of profile {self.ctx.profile.name}; check "
                                  "the name (new things show after Reload registry on the Fleet page)")
            else:
                self.info.setText(f"{self.thing}: no data yet")
            return
        refresh = t.reported.get("refresh")
        if isinstance(refresh, (int, float)) and refresh > 0:  # a gap = 3 missed readings (>= 30 s)
            self.plot.gap_s = max(30.0, 3 * refresh / 1000.0)
        state = "online" if t.online else ("offline" if t.online is False else "presence unknown")
        parts = [state, f"firmware {t.firmware or '?'}"]
        if t.temperature is not None:
            parts.append(f"{t.temperature:.1f} °C")
        if t.humidity is not None:
            parts.append(f"{t.humidity:.0f} %")
        if t.missing:
            parts.append(f"{t.missing} messages missing")
        self.info.setText(" · ".join(parts))

    def _on_changed(self, names) -> None:
        if self.thing in names:
            self._update_info()
        if self.thing_combo.count() != len(self.ctx.live.fleet.things if self.ctx.live.fleet else ()):
            self._refresh_things()

    # -- charts -------------------------------------------------------------------------
    def load_history(self) -> None:
        """Load the last 24 h into the chart (worker thread): first from the account's telemetry
        table (DynamoDB, also hours the app was closed) into the local store, then from the store."""
        session, thing = self.session, self.thing
        if session is None or session.store is None or not thing:
            return
        since = time.time() - HISTORY_S

        def read():
            from fleetdesk.cloud.history import dynamodb_client, sync
            from fleetdesk.errors import FleetdeskError

            note = ""
            try:
                sync(session.store, dynamodb_client(session), thing, since)
            except FleetdeskError as exc:
                note = error_text(exc)
            except Exception as exc:  # noqa: BLE001 - no client for this profile: the local store still charts
                note = f"history from DynamoDB is unavailable ({exc})"
            return session.store.arrays(thing, since), note

        def done(result, error) -> None:
            if error is not None or thing != self.thing:
                return
            (ts, temp, hum), note = result
            self.history_note = note
            if note:
                self.export_label.setText(f"History: {note}")
            live = list(zip(*self.plot.data(thing), strict=True)) if thing in self.plot.keys() else []
            self.plot.load(thing, ts, temp, hum)
            newest = ts[-1] if len(ts) else -1.0
            for t, (t_value, h_value) in live:  # samples that arrived live while the query ran
                if t > newest:
                    self.plot.append(thing, float(t), float(t_value), float(h_value))

        bridge.run_blocking(read, on_done=done)

    def _on_samples(self, batch) -> None:
        thing = self.thing
        if not thing:
            return
        for s in batch:
            if s.thing == thing:
                self.plot.append(thing, s.ts, s.temperature, s.humidity)

    def export(self, path: str | Path, fmt: str) -> None:
        """Export the visible time range of this thing's history to ``path`` (csv | json)."""
        session, thing = self.session, self.thing
        if not thing:
            self.export_label.setText("Pick a thing first (the box at the top, or double-click one on the Fleet page).")
            return
        if session is None or session.store is None:
            self.export_label.setText("Nothing to export: not connected, so no history is kept.")
            return
        lo, hi = self.plot.export_range()

        def write() -> int:
            with open(path, "w", newline="") as f:
                return session.store.export(thing, lo, hi, fmt, f)

        def done(n, error) -> None:
            if error is not None:
                self.export_label.setText(f"Export failed: {error_text(error)}")
                return
            self.exports += 1
            self.export_label.setText(f"Exported {n} samples to {path}")

        bridge.run_blocking(write, on_done=done)

    def _ask_export(self, fmt: str) -> None:
        if not self.thing:
            self.export_label.setText("Pick a thing first (the box at the top, or double-click one on the Fleet page).")
            return
        default = f"{self.thing}-{time.strftime('%Y%m%d-%H%M%S')}.{fmt}"
        path, _ = QFileDialog.getSaveFileName(self, f"Export {fmt.upper()}", default)
        if path:
            self.export(path, fmt)

    # -- shadow -------------------------------------------------------------------------
    def _shadow_selected(self, name) -> None:
        self.shadow_name = name
        self.load_shadow()

    def load_shadow(self) -> None:
        """Fetch the selected shadow and show it (404 = no shadow yet)."""
        session, thing, name = self.session, self.thing, self.shadow_name
        if session is None or not thing:
            return

        def done(doc, error) -> None:
            if thing != self.thing or name != self.shadow_name:
                return
            if error is not None:
                if getattr(error, "code", None) == 404:
                    self.shadow.set_document(None)
                else:
                    self.shadow.show_message(f"Could not load the shadow: {error_text(error)}", ok=False)
                return
            self.shadow.set_document(doc)

        bridge.submit(session.shadows.get(thing, name), done)

    def _on_shadow_event(self, ev) -> None:
        if ev.thing != self.thing or ev.name != self.shadow_name:
            return
        if ev.kind == "documents" and isinstance(ev.doc, dict) and isinstance(ev.doc.get("current"), dict):
            cur = dict(ev.doc["current"])
            if isinstance(cur.get("version"), int) and (self.shadow.version or 0) <= cur["version"]:
                cur.setdefault("timestamp", ev.doc.get("timestamp"))
                self.shadow.set_document(cur)
        elif ev.kind in ("deleted", "accepted"):
            self.load_shadow()

    def _send_desired(self, desired: dict, version, base: dict) -> None:
        session, thing, name = self.session, self.thing, self.shadow_name
        if not thing:
            self.shadow.show_message("Pick a thing first (the box at the top of the page).", ok=False)
            return
        if session is None:
            self.shadow.show_message("Not connected: see the status bar; choose or fix a profile in Settings.",
                                     ok=False)
            return

        def done(result, error) -> None:
            from fleetdesk.cloud.desired import conflicting
            from fleetdesk.cloud.errors import ShadowConflict

            if isinstance(error, ShadowConflict):
                self.shadow.show_conflict(error.current, conflicting(error.changed, desired) or error.changed,
                                          error.message)
            elif error is not None:
                self.shadow.show_message(f"Refused: {error_text(error)}", ok=False)
            elif thing == self.thing and name == self.shadow_name:
                doc, resends = result
                t = session.fleet.things.get(thing) if getattr(session, "fleet", None) else None
                wait = ("Waiting for the device to report…" if t is None or t.online else
                        "The device is offline: it applies the change when it connects.")
                over = " (sent over the device's own reports)" if resends else ""
                self.shadow.show_message(f"Accepted: version {doc.get('version')}{over}. {wait}", ok=None)
                self.shadow.sent(desired, accepted_at=doc.get("timestamp"))
                self.load_shadow()

        # a 409 moved only by the device's readings (or others' other keys) is sent again over
        # the new version; a desired key someone else changed comes back to the user
        bridge.submit(session.shadows.update_desired(thing, desired, name=name, version=version, base=base), done)

    # -- RPC and log --------------------------------------------------------------------
    def call_rpc(self) -> None:
        """Call the selected method with the typed args and show the reply."""
        self.rpc.call(self.session, self.thing)

    def _subscribe_log(self, thing: str) -> None:
        self.log_view.follow(self.session, thing)

    def closeEvent(self, event) -> None:  # noqa: N802
        self._watch_telemetry(None)
        self.log_view.close()
        self.plot.close()
        self.console.close()
        for sig, slot in ((self.ctx.live.samples, self._on_samples), (self.ctx.live.shadow_event, self._on_shadow_event),
                          (self.ctx.live.changed, self._on_changed),
                          (self.ctx.live.session_changed, self._session_changed)):
            try:
                sig.disconnect(slot)
            except (RuntimeError, TypeError):
                pass
        super().closeEvent(event)


async def _maybe_await(value):
    if hasattr(value, "__await__"):
        return await value
    return value


def create_page(ctx: AppContext) -> QWidget:
    """Page factory for the main window registry."""
    return DevicePage(ctx)
