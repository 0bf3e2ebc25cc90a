"""Jobs page: create jobs (templates, raw JSON, OTA upload), target things and groups, watch
executions live, cancel a job or one execution."""

from __future__ import annotations

import html
import json
from pathlib import Path

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from fleetdesk.cloud.jobs import (
    JobRequest,
    JobWatch,
    failures_text,
    load_templates,
    local_time,
    parse_document,
    status_counts,
)
from fleetdesk.errors import FleetdeskError
from gui import actions, bridge
from gui.context import AppContext
from gui.widgets.error_text import error_text

REFRESH_MS = 2000
RAW = "(raw JSON)"
NOT_CONNECTED = ("Not connected: the app connects to the active profile (see the status bar); "
                 "choose or fix a profile in Settings.")
# ListJobs summaries carry no description (AWS JobSummary), so no column for one; the
# executions column holds DescribeJob's counts, failures first
JOB_COLUMNS = ("Job", "Status", "Executions", "Targets", "Created", "Completed")
CANCELABLE = {"IN_PROGRESS", "SCHEDULED"}  # job statuses CancelJob applies to
RED = "#b3261e"


class JobsPage(QWidget):
    """Create jobs on the left; jobs and their executions on the right."""

    def __init__(self, ctx: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.setObjectName("JobsPage")
        self.templates = load_templates()
        self.selected_job: str | None = None
        self._watch: JobWatch | None = None
        self._job_status: dict[str, str] = {}
        self.refreshes = 0
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("<h2>Jobs</h2>"))
        split = QSplitter(Qt.Horizontal)
        split.addWidget(self._create_panel())
        split.addWidget(self._list_panel())
        split.setSizes([520, 700])
        layout.addWidget(split, 1)
        self.message = QLabel("")
        self.message.setObjectName("jobsMessage")
        self.message.setWordWrap(True)
        layout.addWidget(self.message)

        self.timer = QTimer(self)
        self.timer.setInterval(REFRESH_MS)
        self.timer.timeout.connect(self.refresh)
        ctx.live.session_changed.connect(self._session_changed)
        ctx.live.changed.connect(self._things_changed)
        self._session_changed(ctx.live.session)

    # -- layout -------------------------------------------------------------------------
    def _create_panel(self) -> QWidget:
        box = QGroupBox("New job")
        form = QFormLayout(box)
        self.template_combo = QComboBox()
        self.template_combo.setObjectName("templateCombo")
        self.template_combo.addItems([*self.templates, RAW])
        form.addRow("Template", self.template_combo)
        ota = QHBoxLayout()
        self.ota_version = QLineEdit()
        self.ota_version.setObjectName("otaVersion")
        self.ota_version.setPlaceholderText("new firmware_version, e.g. 1.2.0")
        self.ota_button = QPushButton("Firmware file…")
        ota.addWidget(self.ota_version, 1)
        ota.addWidget(self.ota_button)
        form.addRow("OTA", ota)
        self.doc_edit = QPlainTextEdit()
        self.doc_edit.setObjectName("jobDocument")
        self.doc_edit.setMinimumHeight(140)
        form.addRow("Document", self.doc_edit)
        self.thing_filter = QLineEdit()
        self.thing_filter.setPlaceholderText("filter things…")
        self.thing_list = QListWidget()
        self.thing_list.setObjectName("targetThings")
        self.thing_list.setMinimumHeight(110)
        tv = QVBoxLayout()
        tv.addWidget(self.thing_filter)
        tv.addWidget(self.thing_list)
        form.addRow("Things", tv)
        self.group_list = QListWidget()
        self.group_list.setObjectName("targetGroups")
        self.group_list.setMaximumHeight(80)
        form.addRow("Groups", self.group_list)
        self.continuous_check = QCheckBox("Continuous (things joining a group later get it too)")
        form.addRow("", self.continuous_check)
        self.rate_spin = QSpinBox()
        self.rate_spin.setRange(0, 1000)
        self.rate_spin.setSpecialValueText("unlimited")
        self.rate_spin.setSuffix(" things/min")
        form.addRow("Rollout", self.rate_spin)
        abort = QHBoxLayout()
        self.abort_spin = QSpinBox()
        self.abort_spin.setRange(0, 100)
        self.abort_spin.setSpecialValueText("never")
        self.abort_spin.setSuffix(" % failed")
        self.abort_min_spin = QSpinBox()
        self.abort_min_spin.setRange(1, 100000)
        self.abort_min_spin.setPrefix("after ")
        self.abort_min_spin.setSuffix(" executed")
        self.abort_min_spin.setEnabled(False)  # only meaningful with an abort threshold
        self.abort_spin.valueChanged.connect(lambda v: self.abort_min_spin.setEnabled(v > 0))
        abort.addWidget(self.abort_spin)
        abort.addWidget(self.abort_min_spin)
        form.addRow("Abort", abort)
        self.timeout_spin = QSpinBox()
        self.timeout_spin.setRange(0, 10080)
        self.timeout_spin.setSpecialValueText("none")
        self.timeout_spin.setSuffix(" min in progress")
        form.addRow("Timeout", self.timeout_spin)
        self.job_id_edit = QLineEdit()
        self.job_id_edit.setObjectName("jobId")
        self.job_id_edit.setPlaceholderText("automatic")
        form.addRow("Job id", self.job_id_edit)
        self.create_button = QPushButton("Create job")
        self.create_button.setObjectName("createJob")
        form.addRow("", self.create_button)

        self.template_combo.currentTextChanged.connect(self._template_picked)
        self.ota_button.clicked.connect(self._pick_firmware)
        self.thing_filter.textChanged.connect(self._filter_things)
        self.create_button.clicked.connect(self.create_job)
        self._template_picked(self.template_combo.currentText())
        return box

    def _list_panel(self) -> QWidget:
        w = QWidget()
        v = QVBoxLayout(w)
        v.setContentsMargins(0, 0, 0, 0)
        v.addWidget(QLabel("<b>Jobs</b>"))
        self.jobs_table = QTableWidget(0, len(JOB_COLUMNS))
        self.jobs_table.setObjectName("jobsTable")
        self.jobs_table.setHorizontalHeaderLabels(list(JOB_COLUMNS))
        self.jobs_table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.jobs_table.setSelectionMode(QAbstractItemView.SingleSelection)
        self.jobs_table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        _fit_columns(self.jobs_table)
        self.jobs_table.verticalHeader().setVisible(False)
        v.addWidget(self.jobs_table, 2)
        row = QHBoxLayout()
        self.exec_label = QLabel("<b>Executions</b>")
        self.cancel_job_button = QPushButton("Cancel job")
        self.cancel_exec_button = QPushButton("Cancel execution")
        row.addWidget(self.exec_label, 1)
        row.addWidget(self.cancel_job_button)
        row.addWidget(self.cancel_exec_button)
        v.addLayout(row)
        self.failures_label = QLabel("")  # failed executions and the devices' reasons, up front
        self.failures_label.setObjectName("jobFailures")
        self.failures_label.setWordWrap(True)
        self.failures_label.setStyleSheet(f"color: {RED};")
        self.failures_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.failures_label.setVisible(False)
        v.addWidget(self.failures_label)
        self.exec_table = QTableWidget(0, 3)
        self.exec_table.setObjectName("executionsTable")
        self.exec_table.setHorizontalHeaderLabels(["Thing", "Status", "Details"])
        self.exec_table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.exec_table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        _fit_columns(self.exec_table)
        self.exec_table.verticalHeader().setVisible(False)
        v.addWidget(self.exec_table, 3)
        self.jobs_table.itemSelectionChanged.connect(self._job_picked)
        self.exec_table.itemSelectionChanged.connect(self._update_buttons)
        self.cancel_job_button.clicked.connect(self.ask_cancel_job)
        self.cancel_exec_button.clicked.connect(self.cancel_execution)
        return w

    # -- session, targets ---------------------------------------------------------------
    @property
    def session(self):
        return self.ctx.live.session

    def _session_changed(self, session) -> None:
        self._things_changed(None)
        self.create_button.setEnabled(session is not None)
        self.create_button.setToolTip("" if session is not None else "not connected")
        self._update_buttons()
        if session is None:
            self.timer.stop()
            self._groups_loaded([], None, placeholder="(not connected)")
            self.message.setText(NOT_CONNECTED)
            self.message.setStyleSheet("color: #52606d;")
            return
        if self.message.text() == NOT_CONNECTED:
            self.message.setText("")
        bridge.submit(session.control.list_groups(), self._groups_loaded)
        if self.isVisible():
            self.timer.start()
            self.refresh()

    def _groups_loaded(self, groups, error, placeholder: str = "(no thing groups in this profile yet)") -> None:
        if error is not None:
            placeholder = f"(could not list thing groups: {getattr(error, 'message', None) or error})"
            groups = []
        checked = set(self.checked(self.group_list))
        self.group_list.clear()
        for g in sorted(x["groupName"] for x in groups):
            self._add_check(self.group_list, g, g in checked)
        if not groups:  # say why the list is empty; not checkable, so never a target
            item = QListWidgetItem(placeholder)
            item.setFlags(Qt.NoItemFlags)
            self.group_list.addItem(item)

    @staticmethod
    def _add_check(lst: QListWidget, text: str, checked: bool) -> None:
        item = QListWidgetItem(text)
        item.setFlags(item.flags() | Qt.ItemIsUserCheckable)
        item.setCheckState(Qt.Checked if checked else Qt.Unchecked)
        lst.addItem(item)

    @staticmethod
    def checked(lst: QListWidget) -> list[str]:
        return [lst.item(i).text() for i in range(lst.count())
                if lst.item(i).flags() & Qt.ItemIsUserCheckable and lst.item(i).checkState() == Qt.Checked]

    def _things_changed(self, _names) -> None:
        fleet = self.ctx.live.fleet
        names = sorted(fleet.things) if fleet else []
        placeholder = "" if names else ("(no things in this profile yet)" if fleet is not None else "(not connected)")
        shown = [self.thing_list.item(i).text() for i in range(self.thing_list.count())]
        if shown == (names or [placeholder]):
            return
        checked = set(self.checked(self.thing_list))
        self.thing_list.clear()
        for n in names:
            self._add_check(self.thing_list, n, n in checked)
        if placeholder:  # say why the list is empty; not checkable, so never a target
            item = QListWidgetItem(placeholder)
            item.setFlags(Qt.NoItemFlags)
            self.thing_list.addItem(item)
        self._filter_things(self.thing_filter.text())

    def _filter_things(self, text: str) -> None:
        needle = text.strip().lower()
        for i in range(self.thing_list.count()):
            item = self.thing_list.item(i)
            item.setHidden(bool(needle) and needle not in item.text().lower())

    def open_target(self, payload) -> None:
        """Pre-select targets: ``{"things": [...], "groups": [...]}`` (from the Fleet page)."""
        self._things_changed(None)
        things = set(payload.get("things") or []) if isinstance(payload, dict) else set()
        groups = set(payload.get("groups") or []) if isinstance(payload, dict) else set()
        for lst, want in ((self.thing_list, things), (self.group_list, groups)):
            for i in range(lst.count()):
                if lst.item(i).flags() & Qt.ItemIsUserCheckable:  # not the "(no thing groups…)" line
                    lst.item(i).setCheckState(Qt.Checked if lst.item(i).text() in want else Qt.Unchecked)

    # -- document -----------------------------------------------------------------------
    def _template_picked(self, name: str) -> None:
        self.doc_edit.setPlainText(self.templates.get(name, "{\n  \n}"))

    def _pick_firmware(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Firmware package", "", "Firmware (*.pkg *.bin);;All files (*)")
        if path:
            self.use_firmware(path, self.ota_version.text().strip())

    def use_firmware(self, path: str, version: str) -> None:
        """Upload ``path`` and put an OTA document (URL placeholder + SHA-256) in the editor."""
        session = self.session
        if session is None:
            self.show_message(NOT_CONNECTED, ok=False)
            return
        self.show_message(f"uploading {Path(path).name}…")

        def done(doc, error) -> None:
            if error is not None:
                self.show_message(f"OTA: {error_text(error)}", ok=False)
                return
            self.template_combo.blockSignals(True)
            self.template_combo.setCurrentText("ota" if "ota" in self.templates else RAW)
            self.template_combo.blockSignals(False)
            self.doc_edit.setPlainText(json.dumps(doc, indent=2))
            self.show_message(f"uploaded {Path(path).name}: SHA-256 {doc['sha256'][:16]}…, version {doc['version']}")

        bridge.run_blocking(actions.upload_firmware, session.profile, path, version, on_done=done)

    def show_message(self, text: str, ok: bool = True) -> None:
        self.message.setText(text)
        self.message.setStyleSheet("color: #1b7f3b;" if ok else f"color: {RED};")

    # -- create / cancel ----------------------------------------------------------------
    def create_job(self) -> bool:
        """Validate the form and create the job; False (with a message) when refused here."""
        session = self.session
        if session is None:
            self.show_message(NOT_CONNECTED, ok=False)
            return False
        try:
            doc = parse_document(self.doc_edit.toPlainText())
        except ValueError as exc:
            self.show_message(f"Job document: {exc}", ok=False)
            return False
        request = JobRequest(
            doc, things=self.checked(self.thing_list), groups=self.checked(self.group_list),
            job_id=self.job_id_edit.text().strip(), continuous=self.continuous_check.isChecked(),
            max_per_minute=self.rate_spin.value() or None,
            abort_failed_percent=float(self.abort_spin.value()) if self.abort_spin.value() else None,
            abort_min_executed=self.abort_min_spin.value(), timeout_minutes=self.timeout_spin.value() or None)
        try:
            request.check()
        except FleetdeskError as exc:
            self.show_message(error_text(exc), ok=False)
            if "job id" in exc.message:
                self.job_id_edit.setFocus()
            return False
        job_id = request.resolved_id()
        request.job_id = job_id
        self.show_message(f"creating {job_id}…")

        def done(result, error) -> None:
            if error is not None:
                self.show_message(f"{job_id}: {error_text(error)}", ok=False)
                return
            self.job_id_edit.clear()
            self.show_message(f"created {job_id} for {len(request.things)} thing(s), {len(request.groups)} group(s)")
            self.selected_job = job_id
            self.refresh()

        bridge.submit(request.create(session.control), done)
        return True

    def _update_buttons(self) -> None:
        """Cancel buttons only when they can do something: a running job, selected executions."""
        connected = self.session is not None and bool(self.selected_job)
        status = self._job_status.get(self.selected_job or "", "")
        self.cancel_job_button.setEnabled(connected and status in CANCELABLE)
        self.cancel_job_button.setToolTip("" if status in CANCELABLE or not status
                                          else f"{self.selected_job} is {status.lower()}: nothing left to cancel")
        rows = {i.row() for i in self.exec_table.selectedIndexes()}
        self.cancel_exec_button.setEnabled(connected and bool(rows))
        self.cancel_exec_button.setToolTip("" if rows else "select one or more executions first")

    def ask_cancel_job(self) -> None:
        """Confirm, then cancel the selected job (force: in-progress executions stop too)."""
        from PySide6.QtWidgets import QMessageBox

        job = self.selected_job
        if not job:
            return
        answer = QMessageBox.question(
            self, "Cancel job", f"Cancel {job}? Its queued and in-progress executions are canceled on every "
            "target; devices already updating are told to stop.", QMessageBox.Yes | QMessageBox.No, QMessageBox.No)
        if answer == QMessageBox.Yes:
            self.cancel_job()

    def cancel_job(self) -> None:
        session, job = self.session, self.selected_job
        if session is None or not job:
            return
        def done(_result, error) -> None:
            self.show_message(f"{job}: {error_text(error)}" if error else f"canceled {job}", ok=error is None)
            self.refresh()

        bridge.submit(session.control.cancel_job(job, force=True, comment="canceled from Fleetdesk"), done)

    def cancel_execution(self) -> None:
        session, job = self.session, self.selected_job
        rows = sorted({i.row() for i in self.exec_table.selectedIndexes()})
        if session is None or not job or not rows:
            return
        for r in rows:
            thing = self.exec_table.item(r, 0).text()
            bridge.submit(session.control.cancel_execution(job, thing, force=True),
                          lambda _r, e, t=thing: self.show_message(
                              f"{job}/{t}: {error_text(e)}" if e else f"canceled {job} on {t}", ok=e is None))

    # -- live tables --------------------------------------------------------------------
    def refresh(self) -> None:
        """Reload the jobs list and the selected job's executions (the timer calls this)."""
        session = self.session
        if session is None:
            return
        if self._watch is None or self._watch.control is not session.control:
            self._watch = JobWatch(session.control)
        self.refreshes += 1
        bridge.submit(self._watch.jobs(), self._jobs_loaded)
        if self.selected_job:
            job_id = self.selected_job

            async def executions():
                return job_id, await self._watch.executions(job_id)

            bridge.submit(executions(), self._executions_loaded)

    def _jobs_loaded(self, jobs, error) -> None:
        if error is not None:
            self.show_message(f"jobs: {error_text(error)}", ok=False)
            return
        self._job_status = {j.get("jobId", ""): j.get("status", "") for j in jobs}
        self.jobs_table.blockSignals(True)
        self.jobs_table.setRowCount(len(jobs))
        for r, j in enumerate(jobs):
            vals = (j.get("jobId", ""), j.get("status", ""), j.get("executions", ""),
                    str(j.get("targetSelection") or "").lower(), local_time(j.get("createdAt")),
                    local_time(j.get("completedAt")))
            for c, v in enumerate(vals):
                item = QTableWidgetItem(str(v))
                if c in (1, 2) and j.get("bad"):  # COMPLETED with failed executions: say so in red
                    item.setForeground(QColor(RED))
                self.jobs_table.setItem(r, c, item)
            if j.get("jobId") == self.selected_job:
                self.jobs_table.selectRow(r)
        self.jobs_table.blockSignals(False)
        self._update_buttons()

    def _job_picked(self) -> None:
        rows = self.jobs_table.selectionModel().selectedRows()
        if rows:
            self.selected_job = self.jobs_table.item(rows[0].row(), 0).text()
            self.exec_label.setText(f"<b>Executions of {self.selected_job}</b>")
            self.failures_label.setVisible(False)
            self._update_buttons()
            self.refresh()

    def _executions_loaded(self, result, error) -> None:
        if error is not None:
            self.exec_label.setText(f"<b>Executions</b>: {html.escape(error_text(error, ' → '))}")
            return
        job_id, rows = result
        if job_id != self.selected_job:
            return
        counts = status_counts(e.get("status") for e in rows)
        self.exec_label.setText(f"<b>Executions of {job_id}</b> ({len(rows)})" + (f": {counts}" if counts else ""))
        failed = failures_text(rows)
        self.failures_label.setText(failed)
        self.failures_label.setVisible(bool(failed))
        self.exec_table.setRowCount(len(rows))  # rows sorted by thing: a selection stays on its row
        for r, e in enumerate(rows):
            for c, v in enumerate((e["thing"], e.get("status") or "", e.get("details", ""))):
                item = QTableWidgetItem(str(v))
                if c == 2 and v:
                    item.setToolTip(str(v))  # long reasons are elided in the cell
                if c == 1 and v in ("FAILED", "TIMED_OUT", "REJECTED"):
                    item.setForeground(QColor(RED))
                self.exec_table.setItem(r, c, item)
        self._update_buttons()

    def execution_status(self) -> dict[str, tuple[str, str]]:
        """{thing: (status, details)} as shown in the executions table."""
        return {self.exec_table.item(r, 0).text(): (self.exec_table.item(r, 1).text(), self.exec_table.item(r, 2).text())
                for r in range(self.exec_table.rowCount())}

    # -- visibility ---------------------------------------------------------------------
    def showEvent(self, event) -> None:  # noqa: N802
        if self.session is not None:
            self.timer.start()
            self.refresh()
        super().showEvent(event)

    def hideEvent(self, event) -> None:  # noqa: N802
        self.timer.stop()
        super().hideEvent(event)

    def closeEvent(self, event) -> None:  # noqa: N802
        self.timer.stop()
        for sig, slot in ((self.ctx.live.session_changed, self._session_changed),
                          (self.ctx.live.changed, self._things_changed)):
            try:
                sig.disconnect(slot)
            except (RuntimeError, TypeError):
                pass
        super().closeEvent(event)


def _fit_columns(table: QTableWidget) -> None:
    """Columns sized to their contents; the last one takes the rest of the width."""
    header = table.horizontalHeader()
    for c in range(table.columnCount() - 1):
        header.setSectionResizeMode(c, QHeaderView.ResizeToContents)
    header.setSectionResizeMode(table.columnCount() - 1, QHeaderView.Stretch)
    table.setWordWrap(False)


def create_page(ctx: AppContext) -> QWidget:
    """Page factory for the main window registry."""
    return JobsPage(ctx)
