"""The Jobs page's "New job" form: template or raw document, OTA package (picked or built from
this checkout), things and groups to target, rollout, abort and timeout settings."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from fleetdesk.cloud.jobs import JobRequest, load_templates

RAW = "(raw JSON)"


class JobForm(QGroupBox):
    """The inputs; the page reads them and creates the job."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("New job", parent)
        self.templates = load_templates()
        self.fleet = None  # the page sets the fleet model whose things are listed
        self._build()

    def _build(self) -> None:
        form = QFormLayout(self)
        self.template_combo = QComboBox()
        self.template_combo.setObjectName("templateCombo")
        self.template_combo.addItems([*self.templates, RAW])
        form.addRow("Template", self.template_combo)
        ota = QHBoxLayout()
        self.ota_version = QLineEdit()
        self.ota_version.setObjectName("otaVersion")
        self.ota_version.setPlaceholderText("new firmware_version, e.g. 1.2.0")
        self.ota_button = QPushButton("Firmware file…")
        self.ota_button.setToolTip("An OTA package (.pkg) built by Build OTA package or `fleetdesk firmware ota`")
        self.ota_build_button = QPushButton("Build OTA package")
        self.ota_build_button.setToolTip("Package this checkout's firmware as the version on the left and upload it")
        ota.addWidget(self.ota_version, 1)
        ota_buttons = QHBoxLayout()  # under the version: the form stays narrow enough for 1024 px
        ota_buttons.addWidget(self.ota_button)
        ota_buttons.addWidget(self.ota_build_button)
        ota_buttons.addStretch(1)
        form.addRow("OTA", ota)
        form.addRow("", ota_buttons)
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
        self.continuous_check = QCheckBox("Continuous")
        self.continuous_check.setToolTip("Things that join a targeted group later get the job too")
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
        self.thing_filter.textChanged.connect(self._filter_things)
        self._template_picked(self.template_combo.currentText())

    def set_groups(self, groups, placeholder: str = "(no thing groups in this profile yet)") -> None:
        """List the thing groups as check boxes (a placeholder line says why none)."""
        checked = set(self.checked(self.group_list))
        self.group_list.clear()
        for g in sorted(x["groupName"] for x in groups):
            self._add_check(self.group_list, g, g in checked)
        if not groups:  # say why the list is empty; not checkable, so never a target
            item = QListWidgetItem(placeholder)
            item.setFlags(Qt.ItemFlag.NoItemFlags)
            self.group_list.addItem(item)

    @staticmethod
    def _add_check(lst: QListWidget, text: str, checked: bool) -> None:
        item = QListWidgetItem(text)
        item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
        item.setCheckState(Qt.CheckState.Checked if checked else Qt.CheckState.Unchecked)
        lst.addItem(item)

    @staticmethod
    def checked(lst: QListWidget) -> list[str]:
        return [lst.item(i).text() for i in range(lst.count())
                if lst.item(i).flags() & Qt.ItemFlag.ItemIsUserCheckable and lst.item(i).checkState() == Qt.CheckState.Checked]

    def set_things(self) -> None:
        """List the fleet's things as check boxes (a placeholder line says why none)."""
        self._things_changed(None)

    def _things_changed(self, _names) -> None:
        fleet = self.fleet
        names: list[str] = sorted(fleet.things) if fleet else []
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
            item.setFlags(Qt.ItemFlag.NoItemFlags)
            self.thing_list.addItem(item)
        self._filter_things(self.thing_filter.text())

    def _filter_things(self, text: str) -> None:
        needle = text.strip().lower()
        for i in range(self.thing_list.count()):
            item = self.thing_list.item(i)
            item.setHidden(bool(needle) and needle not in item.text().lower())

    def open_target(self, payload) -> None:
        """Pre-select targets: ``{"things": [...], "groups": [...]}`` (from the Fleet page)."""
        self.set_things()
        things = set(payload.get("things") or []) if isinstance(payload, dict) else set()
        groups = set(payload.get("groups") or []) if isinstance(payload, dict) else set()
        for lst, want in ((self.thing_list, things), (self.group_list, groups)):
            for i in range(lst.count()):
                if lst.item(i).flags() & Qt.ItemFlag.ItemIsUserCheckable:  # not the "(no thing groups…)" line
                    lst.item(i).setCheckState(Qt.CheckState.Checked if lst.item(i).text() in want else Qt.CheckState.Unchecked)

    # -- document -----------------------------------------------------------------------
    def _template_picked(self, name: str) -> None:
        self.doc_edit.setPlainText(self.templates.get(name, "{\n  \n}"))

    def request(self, document: dict) -> JobRequest:
        """The job the form describes, for ``document`` (checked by the caller)."""
        return JobRequest(
            document, things=self.checked(self.thing_list), groups=self.checked(self.group_list),
            job_id=self.job_id_edit.text().strip(), continuous=self.continuous_check.isChecked(),
            max_per_minute=self.rate_spin.value() or None,
            abort_failed_percent=float(self.abort_spin.value()) if self.abort_spin.value() else None,
            abort_min_executed=self.abort_min_spin.value(), timeout_minutes=self.timeout_spin.value() or None)
