"""Shadow view + editor: desired / reported / delta side by side (one row per key, with its
last-update time), and a desired-state editor.

The widget only shows documents and validates input; the page sends. ``send_requested``
carries the desired changes, the version the edit was made against and that document, so
the cloud layer can refuse a stale edit (409) and the page can show what changed.
"""

from __future__ import annotations

import datetime
import json
import time
from typing import Any

from PySide6.QtCore import Signal

from fleetdesk.cloud.desired import DEFAULT_REFRESH_MS, REFRESH_MAX_MS, REFRESH_MIN_MS, check_desired
from fleetdesk.cloud.errors import ShadowRejected
from fleetdesk.cloud.shadows import parse_state_json
from fleetdesk.errors import FleetdeskError
from PySide6.QtGui import QBrush, QColor, QTextCursor
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QTabWidget,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

CLASSIC = "(classic)"
WAITING = "#52606d"  # neither done (green) nor wrong (red): the device has not answered yet


class JsonProblem(ValueError):
    """Why a desired document cannot be sent; ``position`` is the character offset (or -1)."""

    def __init__(self, message: str, position: int = -1) -> None:
        super().__init__(message)
        self.position = position


def parse_desired(text: str) -> dict:
    """Validate raw desired JSON before it is sent (the domain's check, shown in editor terms).

    Raises:
        JsonProblem: with "line L, column C: ..." and the character position, or why the
            document is not acceptable (not an object, too deep, too large).
    """
    try:
        value = parse_state_json(text, "desired")
    except ShadowRejected as exc:
        where = exc.error if isinstance(getattr(exc, "error", None), dict) else {}
        if "line" in where:
            msg = str(exc.message).split(": ", 1)[-1].rsplit(" at line", 1)[0]
            raise JsonProblem(f"line {where['line']}, column {where['column']}: {msg}", where["pos"]) from exc
        raise JsonProblem(exc.message) from exc
    if value is None:
        raise JsonProblem("the desired state must be a JSON object, e.g. {\"on\": true}", 0)
    return value


def delta_of(desired: Any, reported: Any) -> dict:
    """The leaves of ``desired`` that ``reported`` does not match (AWS /update/delta rules)."""
    if not isinstance(desired, dict):
        return {}
    out = {}
    for k, v in desired.items():
        r = reported.get(k) if isinstance(reported, dict) else None
        if isinstance(v, dict) and isinstance(r, dict):
            sub = delta_of(v, r)
            if sub:
                out[k] = sub
        elif v != r:
            out[k] = v
    return out


def _stamp(meta: Any) -> str:
    ts = meta.get("timestamp") if isinstance(meta, dict) else None
    if not isinstance(ts, (int, float)):
        return ""
    return datetime.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def _leaves(state: Any, meta: Any, prefix: str = "") -> dict[str, tuple[Any, Any]]:
    """Flatten a section into {dotted.key: (value, timestamp)}."""
    out: dict[str, tuple[Any, Any]] = {}
    if isinstance(state, dict):
        for k, v in state.items():
            m = meta.get(k) if isinstance(meta, dict) else None
            path = f"{prefix}{k}"
            if isinstance(v, dict) and v:
                out.update(_leaves(v, m, path + "."))
            else:
                out[path] = (v, m.get("timestamp") if isinstance(m, dict) else None)
    return out


COLUMNS = ("Key", "Desired", "Reported", "Delta", "Updated")


def shadow_rows(doc: dict) -> list[tuple[str, str, str, str, str]]:
    """Rows of the side-by-side view: key, desired, reported, delta, last update (JSON text)."""
    state = doc.get("state") or {}
    meta = doc.get("metadata") or {}
    desired = _leaves(state.get("desired") or {}, meta.get("desired"))
    reported = _leaves(state.get("reported") or {}, meta.get("reported"))
    delta = _leaves(state.get("delta") if "delta" in state else delta_of(state.get("desired") or {},
                                                                          state.get("reported") or {}), None)
    rows = []
    for key in sorted(set(desired) | set(reported)):
        d, r, x = desired.get(key), reported.get(key), delta.get(key)
        stamps = [t for t in (d[1] if d else None, r[1] if r else None) if isinstance(t, (int, float))]
        rows.append((key, json.dumps(d[0]) if d else "", json.dumps(r[0]) if r else "",
                     json.dumps(x[0]) if x else "", _stamp({"timestamp": max(stamps)}) if stamps else ""))
    return rows


class ShadowEditor(QWidget):
    """Desired / reported / delta trees, version, and a form + raw JSON editor.

    Signals:
        send_requested(dict desired, object version, dict base): the user pressed Send
            with a valid document.
        reload_requested(): the user asked to reload the shadow.
        shadow_selected(str|None): a named shadow (None = classic) was picked.
    """

    send_requested = Signal(dict, object, dict)
    reload_requested = Signal()
    shadow_selected = Signal(object)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("ShadowEditor")
        self.doc: dict = {}
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        top = QHBoxLayout()
        self.name_combo = QComboBox()
        self.name_combo.setObjectName("shadowName")
        self.name_combo.addItem(CLASSIC, None)
        self.version_label = QLabel("no shadow")
        self.version_label.setObjectName("shadowVersion")
        self.reload_button = QPushButton("Reload")
        top.addWidget(QLabel("Shadow"))
        top.addWidget(self.name_combo)
        top.addWidget(self.version_label, 1)
        top.addWidget(self.reload_button)
        layout.addLayout(top)

        self.tree = QTreeWidget()
        self.tree.setObjectName("shadowTree")
        self.tree.setHeaderLabels(list(COLUMNS))
        self.tree.setRootIsDecorated(False)
        self.tree.setAlternatingRowColors(True)
        layout.addWidget(self.tree, 3)

        self.tabs = QTabWidget()
        form_tab = QWidget()
        form = QFormLayout(form_tab)
        self.on_check = QCheckBox("LED on")
        self.refresh_spin = QSpinBox()
        self.refresh_spin.setRange(REFRESH_MIN_MS, REFRESH_MAX_MS)  # what the firmware accepts
        self.refresh_spin.setSingleStep(500)
        self.refresh_spin.setSuffix(" ms")
        self.reboot_spin = QSpinBox()
        self.reboot_spin.setRange(0, 1_000_000)
        self.firmware_edit = QLineEdit()
        self.firmware_edit.setPlaceholderText("e.g. 1.1.0 (the device updates itself by OTA)")
        form.addRow("on", self.on_check)
        form.addRow("refresh", self.refresh_spin)
        form.addRow("reboot (counter)", self.reboot_spin)
        form.addRow("firmware_version", self.firmware_edit)
        self.tabs.addTab(form_tab, "Form")
        raw_tab = QWidget()
        raw = QVBoxLayout(raw_tab)
        raw.setContentsMargins(0, 0, 0, 0)
        self.raw_edit = QPlainTextEdit()
        self.raw_edit.setObjectName("rawDesired")
        raw.addWidget(self.raw_edit)
        self.tabs.addTab(raw_tab, "Raw JSON")
        layout.addWidget(self.tabs, 2)

        bottom = QHBoxLayout()
        self.send_button = QPushButton("Send desired")
        self.send_button.setObjectName("sendDesired")
        self.message = QLabel("")
        self.message.setObjectName("shadowMessage")
        self.message.setWordWrap(True)
        bottom.addWidget(self.send_button)
        bottom.addWidget(self.message, 1)
        layout.addLayout(bottom)

        self.dirty = False  # the user edited the form/raw JSON since the last load
        self.awaiting: dict | None = None  # accepted desired change the device has not reported yet
        self.awaiting_since = 0.0  # when it was accepted (a device error after that is about it)
        self.edit_base: dict = {}
        self._loading = False
        for sig in (self.on_check.toggled, self.refresh_spin.valueChanged, self.reboot_spin.valueChanged,
                    self.firmware_edit.textEdited, self.raw_edit.textChanged):
            sig.connect(self._edited)
        self.send_button.clicked.connect(self.send)
        self.reload_button.clicked.connect(self.reload_requested.emit)
        self.name_combo.currentIndexChanged.connect(lambda _i: self.shadow_selected.emit(self.name_combo.currentData()))
        self._loading = True
        try:  # the firmware's defaults, not the spin boxes' minimums (a 100 ms refresh)
            self._fill_form({})
        finally:
            self._loading = False

    # -- documents ----------------------------------------------------------------------
    def _edited(self, *_args) -> None:
        if not self._loading and not self.dirty:
            self.dirty = True
            self.edit_base = self.doc  # the edit is made against this version

    @property
    def version(self) -> int | None:
        v = self.doc.get("version")
        return v if isinstance(v, int) else None

    def set_named_shadows(self, names: list[str]) -> None:
        """List the thing's named shadows (the classic one is always first)."""
        current = self.name_combo.currentData()
        self.name_combo.blockSignals(True)
        self.name_combo.clear()
        self.name_combo.addItem(CLASSIC, None)
        for n in sorted(names):
            self.name_combo.addItem(n, n)
        self.name_combo.setCurrentIndex(max(0, self.name_combo.findData(current)))
        self.name_combo.blockSignals(False)

    def set_document(self, doc: dict | None, *, keep_edits: bool | None = None) -> None:
        """Show a full shadow document (``state``, ``metadata``, ``version``); None = no shadow.

        The editor keeps what the user typed (``keep_edits``; default: while there are
        unsent edits): live updates then refresh the trees and the version only.
        """
        if keep_edits is None:
            keep_edits = self.dirty
        self.doc = doc or {}
        state = self.doc.get("state") or {}
        desired, reported = state.get("desired") or {}, state.get("reported") or {}
        self.tree.clear()
        delta_brush = QBrush(QColor("#b3261e"))
        for row in shadow_rows(self.doc):
            item = QTreeWidgetItem(list(row))
            if row[3]:
                item.setForeground(3, delta_brush)
            self.tree.addTopLevelItem(item)
        for c in range(len(COLUMNS)):
            self.tree.resizeColumnToContents(c)
        if doc:
            when = _stamp({"timestamp": self.doc.get("timestamp")})
            self.version_label.setText(f"version {self.version}" + (f" · {when}" if when else ""))
        else:
            self.version_label.setText("no shadow yet")
        if not keep_edits:
            self._loading = True
            try:
                self._fill_form({**reported, **desired})
                self.raw_edit.setPlainText(json.dumps(desired, indent=2) if desired else "{\n  \n}")
            finally:
                self._loading = False
            self.dirty = False
        self._check_reported()

    def _check_reported(self) -> None:
        """Once the device reports what was sent, say so (replaces "Waiting for the device…")."""
        if not self.awaiting or not self.doc:
            return
        reported = (self.doc.get("state") or {}).get("reported") or {}
        error = reported.get("error")
        meta = ((self.doc.get("metadata") or {}).get("reported") or {}).get("error")
        stamp = meta.get("timestamp") if isinstance(meta, dict) else None
        pending = delta_of(self.awaiting, reported)
        if pending and error and isinstance(stamp, (int, float)) and stamp >= int(self.awaiting_since):
            keys = ", ".join(_leaves(pending, None))
            self.awaiting = None
            self.show_message(f"The device refused the change ({keys}): {error}. Send a value it takes, "
                              "or null to clear the desired key.", ok=False)
            return
        if pending:
            return
        keys = ", ".join(_leaves(self.awaiting, None))
        self.awaiting = None
        self.show_message(f"The device reported the change ({keys}): version {self.version}.")

    def reset(self) -> None:
        """Forget the previous thing's message and pending change (another thing is shown)."""
        self.awaiting = None
        self.show_message("")

    def _fill_form(self, values: dict) -> None:
        self.on_check.setChecked(bool(values.get("on", False)))
        refresh = values.get("refresh")
        self.refresh_spin.setValue(int(refresh) if isinstance(refresh, (int, float)) else DEFAULT_REFRESH_MS)
        reboot = values.get("reboot")
        self.reboot_spin.setValue(int(reboot) if isinstance(reboot, (int, float)) else 0)
        fw = values.get("firmware_version")
        self.firmware_edit.setText(str(fw) if fw is not None else "")
        self._form_base = self.form_values()

    def form_values(self) -> dict:
        """The form's four keys as a dict."""
        out: dict[str, Any] = {"on": self.on_check.isChecked(), "refresh": self.refresh_spin.value(),
               "reboot": self.reboot_spin.value()}
        fw = self.firmware_edit.text().strip()
        if fw:
            out["firmware_version"] = fw
        return out

    # -- sending ------------------------------------------------------------------------
    def show_message(self, text: str, ok: bool | None = True) -> None:
        """Green when ``ok``, red when False, grey when None (waiting for the device)."""
        self.message.setText(text)
        color = WAITING if ok is None else "#1b7f3b" if ok else "#b3261e"
        self.message.setStyleSheet(f"color: {color};")

    def desired_to_send(self) -> dict:
        """What Send would send: the form's changed keys, or the raw JSON (validated).

        Raises:
            JsonProblem: the raw JSON is not acceptable (the cursor is moved to the error).
        """
        if self.tabs.currentIndex() == 0:
            base = getattr(self, "_form_base", {})
            values = self.form_values()
            desired = {k: v for k, v in values.items() if base.get(k) != v}
        else:
            desired = self._raw_desired()
        try:
            check_desired(desired)  # never send what the firmware refuses (each refusal is an update)
        except FleetdeskError as exc:
            raise JsonProblem(exc.message) from exc
        return desired

    def _raw_desired(self) -> dict:
        try:
            return parse_desired(self.raw_edit.toPlainText())
        except JsonProblem as exc:
            if exc.position >= 0:
                cursor = self.raw_edit.textCursor()
                cursor.setPosition(min(exc.position, len(self.raw_edit.toPlainText())))
                cursor.movePosition(QTextCursor.MoveOperation.Right, QTextCursor.MoveMode.KeepAnchor)
                self.raw_edit.setTextCursor(cursor)
                self.raw_edit.setFocus()
            raise

    def send(self) -> bool:
        """Validate and emit ``send_requested``; False (with a message) when refused."""
        try:
            desired = self.desired_to_send()
        except JsonProblem as exc:
            self.show_message(f"Not sent: {exc}", ok=False)
            return False
        if not desired:
            self.show_message("Nothing changed in the form.", ok=False)
            return False
        base = self.edit_base if self.dirty else self.doc
        version = base.get("version") if isinstance(base.get("version"), int) else None
        self.show_message(f"Sending {json.dumps(desired)} against version {version}…")
        self.send_requested.emit(desired, version, base)
        return True

    def sent(self, desired: dict | None = None, accepted_at: float | None = None) -> None:
        """The last send was accepted: the next document may replace the editor's content.

        Args:
            desired: what was sent; the editor says so once the device reports it.
            accepted_at: the ``timestamp`` of the ``/update/accepted`` reply (the shadow
                service's clock, like the device error's metadata). A device refusal
                stamped from then on is about this send, even when it arrived before the
                page handled the reply (a quick device, a busy app), and whatever this
                computer's clock says. Without it: now.
        """
        self.dirty = False
        self.awaiting = desired or None
        has_stamp = isinstance(accepted_at, (int, float)) and not isinstance(accepted_at, bool)
        self.awaiting_since = float(accepted_at) if has_stamp else time.time()  # type: ignore[arg-type]

    def show_conflict(self, current: dict, changed: list[str], message: str) -> None:
        """A 409: show the reloaded document and which keys changed; the user's edits stay."""
        self.set_document(current, keep_edits=True)
        self.edit_base = self.doc  # sending again means "over this version"
        keys = ", ".join(changed) if changed else "the document"
        self.show_message(f"{message}. Changed since your edit: {keys}. Review and send again.", ok=False)
