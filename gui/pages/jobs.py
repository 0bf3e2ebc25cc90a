"""Jobs page: create jobs (templates, raw JSON, OTA upload), target things and groups, watch
executions live, cancel a job or one execution."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any, Callable

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSplitter,
    QTableWidget,
    QVBoxLayout,
    QWidget,
)

from fleetdesk.cloud.jobs import (
    JobWatch,
    failures_text,
    parse_document,
    status_counts,
)
from fleetdesk.errors import FleetdeskError
from fleetdesk_gui import actions, bridge
from fleetdesk_gui.context import AppContext
from fleetdesk_gui.widgets.error_text import error_text
from fleetdesk_gui.widgets.job_form import RAW, JobForm
from fleetdesk_gui.widgets.job_tables import RED, fill_executions, fill_jobs, fit_columns
from fleetdesk_gui.widgets.table_cell import cell_text
from fleetdesk_gui.widgets.visible_refresh import RefreshWhileVisible

REFRESH_MS = 2000
NOT_CONNECTED = ("Not connected: the app connects to the active profile (see the status bar); "
                 "choose or fix a profile in Settings.")
# ListJobs summaries carry no description (AWS JobSummary), so no column for one; the
# executions column holds DescribeJob's counts, failures first
JOB_COLUMNS = ("Job", "Status", "Executions", "Created", "Completed")  # snapshot/continuous: the job's tooltip
CANCELABLE = {"IN_PROGRESS", "SCHEDULED"}  # job statuses CancelJob applies to


class JobsPage(QWidget):
    """Create jobs on the left; jobs and their executions on the right."""

    def __init__(self, ctx: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.setObjectName("JobsPage")
        self.selected_job: str | None = None
        self._watch: JobWatch | None = None
        self._job_status: dict[str, str] = {}
        self.refreshes = 0
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("<h2>Jobs</h2>"))
        split = QSplitter(Qt.Orientation.Horizontal)
        self.form = JobForm()
        self.form.fleet = ctx.live.fleet
        for name in ("templates", "template_combo", "ota_version", "ota_button", "ota_build_button", "doc_edit",
                     "thing_filter", "thing_list", "group_list", "continuous_check", "rate_spin", "abort_spin",
                     "abort_min_spin", "timeout_spin", "job_id_edit", "create_button", "checked", "open_target"):
            setattr(self, name, getattr(self.form, name))  # the page's inputs keep their names
        self.form.ota_button.clicked.connect(self._pick_firmware)
        self.form.ota_build_button.clicked.connect(self.build_ota)
        self.form.create_button.clicked.connect(self.create_job)
        split.addWidget(self.form)
        split.addWidget(self._list_panel())
        split.setSizes([430, 790])  # the jobs table keeps every column on a 1024 px screen
        layout.addWidget(split, 1)
        self.message = QLabel("")
        self.message.setObjectName("jobsMessage")
        self.message.setWordWrap(True)
        layout.addWidget(self.message)

        self.timer = RefreshWhileVisible(self, self.refresh, REFRESH_MS, when=lambda: self.session is not None).timer
        ctx.live.changed.connect(self._things_changed)
        ctx.live.follow_session(self._session_changed)

    # -- layout -------------------------------------------------------------------------
    def _list_panel(self) -> QWidget:
        w = QWidget()
        v = QVBoxLayout(w)
        v.setContentsMargins(0, 0, 0, 0)
        v.addWidget(QLabel("<b>Jobs</b>"))
        self.jobs_table = QTableWidget(0, len(JOB_COLUMNS))
        self.jobs_table.setObjectName("jobsTable")
        self.jobs_table.setHorizontalHeaderLabels(list(JOB_COLUMNS))
        self.jobs_table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.jobs_table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.jobs_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        fit_columns(self.jobs_table)
        self.jobs_table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Interactive)  # capped: job_tables
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
        self.failures_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.failures_label.setVisible(False)
        v.addWidget(self.failures_label)
        self.exec_table = QTableWidget(0, 3)
        self.exec_table.setObjectName("executionsTable")
        self.exec_table.setHorizontalHeaderLabels(["Thing", "Status", "Details"])
        self.exec_table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.exec_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        fit_columns(self.exec_table)
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
        self.form.create_button.setEnabled(session is not None)
        self.form.create_button.setToolTip("" if session is not None else "not connected")
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

    def _things_changed(self, _names) -> None:
        self.form.fleet = self.ctx.live.fleet
        self.form.set_things()

    def _groups_loaded(self, groups, error, placeholder: str = "(no thing groups in this profile yet)") -> None:
        if error is not None:
            placeholder = f"(could not list thing groups: {getattr(error, 'message', None) or error})"
            groups = []
        self.form.set_groups(groups, placeholder)

    def _pick_firmware(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "OTA package", "", "OTA packages (*.pkg);;All files (*)")
        if path:
            self.use_firmware(path, self.form.ota_version.text().strip())

    def build_ota(self) -> None:
        """Package this checkout's firmware as the typed version, then upload it like a picked file."""
        from fleetdesk.fleet.ota_files import build_ota_package

        version = self.form.ota_version.text().strip()
        if not version:
            self.show_message("Type the new firmware_version first (e.g. 1.2.0): devices report it after the update.",
                              ok=False)
            self.form.ota_version.setFocus()
            return
        self.show_message(f"building the OTA package of firmware {version}…")
        bridge.run_blocking(build_ota_package, version,
                            on_done=self._ota_then(lambda path: self.use_firmware(str(path), version)))

    def _ota_then(self, step: Callable[[Any], None]) -> Callable[[Any, BaseException | None], None]:
        """``on_done`` for an OTA step run off the Qt thread: an error ends the OTA with its message,
        a result goes on to ``step``."""
        def done(result, error) -> None:
            if error is not None:
                self._ota_failed(error)
            else:
                step(result)

        return done

    def _ota_failed(self, error: BaseException) -> None:
        self.show_message(f"OTA: {error_text(error)}", ok=False)

    def use_firmware(self, path: str, version: str) -> None:
        """Upload ``path`` and put an OTA document (URL placeholder + SHA-256) in the editor."""
        from fleetdesk.fleet.ota_files import check_ota_file

        session = self.session
        if session is None:
            self.show_message(NOT_CONNECTED, ok=False)
            return
        try:
            check_ota_file(path)  # a flash image would upload, then fail on every device
        except FleetdeskError as exc:
            self._ota_failed(exc)
            return
        self.show_message(f"uploading {Path(path).name}…")

        def uploaded(doc) -> None:
            self.form.template_combo.blockSignals(True)
            self.form.template_combo.setCurrentText("ota" if "ota" in self.form.templates else RAW)
            self.form.template_combo.blockSignals(False)
            self.form.doc_edit.setPlainText(json.dumps(doc, indent=2))
            self.show_message(f"uploaded {Path(path).name}: SHA-256 {doc['sha256'][:16]}…, version {doc['version']}")

        bridge.run_blocking(actions.upload_firmware, session.profile, path, version, on_done=self._ota_then(uploaded))

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
            doc = parse_document(self.form.doc_edit.toPlainText())
        except ValueError as exc:
            self.show_message(f"Job document: {exc}", ok=False)
            return False
        request = self.form.request(doc)
        try:
            request.check()
        except FleetdeskError as exc:
            self.show_message(error_text(exc), ok=False)
            if "job id" in exc.message:
                self.form.job_id_edit.setFocus()
            return False
        job_id = request.resolved_id()
        request.job_id = job_id
        self.show_message(f"creating {job_id}…")

        def done(result, error) -> None:
            if error is not None:
                self.show_message(f"{job_id}: {error_text(error)}", ok=False)
                return
            self.form.job_id_edit.clear()
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
            "target; devices already updating are told to stop.", QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, QMessageBox.StandardButton.No)
        if answer == QMessageBox.StandardButton.Yes:
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
            thing = cell_text(self.exec_table, r, 0)

            def done(_r: Any, e: BaseException | None, t: str = thing) -> None:
                self.show_message(f"{job}/{t}: {error_text(e)}" if e else f"canceled {job} on {t}", ok=e is None)

            bridge.submit(session.control.cancel_execution(job, thing, force=True), done)

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
        fill_jobs(self.jobs_table, jobs, self.selected_job)
        self.jobs_table.blockSignals(False)
        self._update_buttons()

    def _job_picked(self) -> None:
        rows = self.jobs_table.selectionModel().selectedRows()
        if rows:
            self.selected_job = cell_text(self.jobs_table, rows[0].row(), 0)
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
        fill_executions(self.exec_table, rows)
        self._update_buttons()

    def execution_status(self) -> dict[str, tuple[str, str]]:
        """{thing: (status, details)} as shown in the executions table."""
        t = self.exec_table
        return {cell_text(t, r, 0): (cell_text(t, r, 1), cell_text(t, r, 2))
                for r in range(self.exec_table.rowCount())}

    # -- visibility (the refresh timer: RefreshWhileVisible) ---------------------------------
    def closeEvent(self, event) -> None:  # noqa: N802
        self.timer.stop()
        for sig, slot in ((self.ctx.live.session_changed, self._session_changed),
                          (self.ctx.live.changed, self._things_changed)):
            try:
                sig.disconnect(slot)
            except (RuntimeError, TypeError):
                pass
        super().closeEvent(event)


def create_page(ctx: AppContext) -> QWidget:
    """Page factory for the main window registry."""
    return JobsPage(ctx)
