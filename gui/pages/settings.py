"""Settings page: edit cloud profiles (the local sandbox, or an AWS IoT account).

Plain settings go to the profiles file (fleetdesk.config.Profiles); an AWS secret access
key goes to the OS keyring only (Profile.set_secret_key), never to a file.
"""

from __future__ import annotations

import re
from typing import TypeVar

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from fleetdesk.cloud.backend import get_cloud_backend
from fleetdesk.config import CREDENTIAL_SOURCES, Profile, Profiles
from fleetdesk.errors import ConfigError
from fleetdesk.paths import home_relative, sandbox_state_dir
from fleetdesk_gui.context import AppContext

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
NEW = "<new profile>"
BLUETOOTH_CHOICES = (
    ("", "Default (virtual boards for a sandbox, the radio for AWS)"),
    ("virtual", "Virtual boards (this computer's virtual fleet)"),
    ("system", "This computer's Bluetooth radio"),
)
CRED_LABELS = {
    "default-chain": "Default chain (env vars, ~/.aws, SSO)",
    "aws-profile": "Named AWS CLI profile",
    "keyring": "Access key (secret in the OS keyring)",
}


def check_fields(p: Profile) -> None:
    """Field checks beyond Profile.validate: the name here, the cloud's own fields (host and
    region formats on AWS) in its backend.

    Raises:
        ConfigError: naming the field and what a valid value looks like.
    """
    if not NAME_RE.match(p.name):
        raise ConfigError(
            f"profile name {p.name!r} is not valid",
            "use letters, digits, '.', '_' or '-' (up to 64), starting with a letter or digit",
        )
    get_cloud_backend(p).check_fields()  # what this profile's cloud needs (names the bad kind too)
    p.validate()


W = TypeVar("W", bound=QWidget)


def _row(form: QFormLayout, label: str, widget: W, name: str) -> W:
    """``widget`` named ``name`` (what the tests find it by) as the form's row ``label``."""
    widget.setObjectName(name)
    form.addRow(label, widget)
    return widget


class _FormStack(QStackedWidget):
    """A stack as tall as the form it shows (a QStackedWidget takes its tallest page's height,
    which left a blank band under the short sandbox form)."""

    def sizeHint(self):  # noqa: N802 (Qt name)
        w = self.currentWidget()
        return w.sizeHint() if w is not None else super().sizeHint()

    def minimumSizeHint(self):  # noqa: N802 (Qt name)
        w = self.currentWidget()
        return w.minimumSizeHint() if w is not None else super().minimumSizeHint()


class SettingsPage(QWidget):
    """Profile editor. Emits ``saved(Profiles)`` after a successful save."""

    saved = Signal(object)

    def __init__(self, ctx: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.setObjectName("SettingsPage")
        outer = QVBoxLayout(self)
        title = QLabel("<h2>Settings</h2>")
        outer.addWidget(title)

        box = QGroupBox("Cloud profile")
        form = QFormLayout(box)
        self.profile_combo = _row(form, "Profile", QComboBox(), "profileCombo")
        self.name_edit = _row(form, "Name", QLineEdit(), "nameEdit")
        self.kind_combo = _row(form, "Kind", QComboBox(), "kindCombo")
        self.kind_combo.addItem("Local sandbox (AWS IoT emulator)", "sandbox")
        self.kind_combo.addItem("AWS IoT account", "aws")
        outer.addWidget(box)

        self.kind_stack = _FormStack()
        # sandbox fields
        sb = QGroupBox("Sandbox")
        sbf = QFormLayout(sb)
        row = QHBoxLayout()
        self.state_dir_edit = QLineEdit()
        self.state_dir_edit.setObjectName("stateDirEdit")
        self.state_dir_edit.setPlaceholderText(home_relative(sandbox_state_dir()))
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse_state_dir)
        row.addWidget(self.state_dir_edit, 1)
        row.addWidget(browse)
        sbf.addRow("State directory", row)
        hint = QLabel("Empty = the per-user default. The app starts this sandbox, or attaches to it if it runs.")
        hint.setWordWrap(True)
        sbf.addRow(hint)
        self.sandbox_status = QLabel("")
        self.sandbox_status.setObjectName("sandboxStatus")
        self.sandbox_status.setWordWrap(True)
        self.sandbox_status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        sbf.addRow("Now", self.sandbox_status)
        self.kind_stack.addWidget(sb)
        # aws fields
        aws = QGroupBox("AWS IoT")
        af = QFormLayout(aws)
        self.endpoint_edit = _row(af, "Endpoint (iot:Data-ATS)", QLineEdit(), "endpointEdit")
        self.endpoint_edit.setPlaceholderText("xxxxxxxx-ats.iot.us-east-1.amazonaws.com")
        self.region_edit = _row(af, "Region", QLineEdit(), "regionEdit")
        self.cred_combo = _row(af, "Credentials", QComboBox(), "credCombo")
        for src in CREDENTIAL_SOURCES:
            self.cred_combo.addItem(CRED_LABELS.get(src, src), src)
        self.aws_profile_edit = _row(af, "AWS CLI profile", QLineEdit(), "awsProfileEdit")
        self.key_id_edit = _row(af, "Access key id", QLineEdit(), "keyIdEdit")
        self.secret_edit = _row(af, "Secret access key", QLineEdit(), "secretEdit")
        self.secret_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.secret_edit.setPlaceholderText("stored in the OS keyring; leave empty to keep")
        self._aws_form = af
        self.kind_stack.addWidget(aws)
        outer.addWidget(self.kind_stack)

        bt = QGroupBox("Bluetooth (BLE Setup)")
        btf = QFormLayout(bt)
        self.bluetooth_combo = _row(btf, "Bluetooth", QComboBox(), "bluetoothCombo")
        for value, label in BLUETOOTH_CHOICES:
            self.bluetooth_combo.addItem(label, value)
        outer.addWidget(bt)
        from fleetdesk_gui.widgets.account_setup import AccountSetupBox

        self.account_setup = AccountSetupBox(ctx)  # issue 18: the one-time setup for large fleets
        outer.addWidget(self.account_setup)

        buttons = QHBoxLayout()
        self.save_button = QPushButton("Save and use")
        self.save_button.setObjectName("saveButton")
        self.save_button.setDefault(True)
        buttons.addWidget(self.save_button)
        buttons.addStretch(1)
        outer.addLayout(buttons)
        self.message = QLabel("")
        self.message.setObjectName("settingsMessage")
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        outer.addWidget(self.message)
        outer.addStretch(1)

        self.kind_combo.currentIndexChanged.connect(self._kind_changed)
        self.cred_combo.currentIndexChanged.connect(self._cred_changed)
        self.profile_combo.currentIndexChanged.connect(self._profile_picked)
        self.save_button.clicked.connect(self.save)
        ctx.cloud_state_changed.connect(self._cloud_state)
        ctx.profile_changed.connect(self._cloud_state)
        self._fill_combo(ctx.profiles.active)
        self._cloud_state()

    # -- form <-> profile ---------------------------------------------------------------
    def _fill_combo(self, select: str) -> None:
        self.profile_combo.blockSignals(True)
        self.profile_combo.clear()
        for name in self.ctx.profiles.items:
            self.profile_combo.addItem(name, name)
        self.profile_combo.addItem(NEW, None)
        idx = max(0, self.profile_combo.findData(select))
        self.profile_combo.setCurrentIndex(idx)
        self.profile_combo.blockSignals(False)
        self._profile_picked()

    def _profile_picked(self, *_args) -> None:
        name = self.profile_combo.currentData()
        p = (self.ctx.profiles.items.get(name) if name else None) or Profile(name="", kind="aws")
        self.load_profile(p)
        self.name_edit.setReadOnly(bool(name))

    def load_profile(self, p: Profile) -> None:
        """Show ``p`` in the form."""
        self.name_edit.setText(p.name)
        self.kind_combo.setCurrentIndex(max(0, self.kind_combo.findData(p.kind)))
        self.state_dir_edit.setText(p.state_dir or "")
        self.endpoint_edit.setText(p.endpoint)
        self.region_edit.setText(p.region)
        self.cred_combo.setCurrentIndex(max(0, self.cred_combo.findData(p.credentials)))
        self.aws_profile_edit.setText(p.aws_profile)
        self.key_id_edit.setText(p.access_key_id)
        self.bluetooth_combo.setCurrentIndex(max(0, self.bluetooth_combo.findData(p.bluetooth)))
        self.secret_edit.clear()
        self._kind_changed()
        self.show_message("")

    def form_profile(self) -> Profile:
        """The profile the form describes (not yet validated)."""
        base = self.ctx.profiles.items.get(self.profile_combo.currentData() or "")
        return Profile(
            name=self.name_edit.text().strip(),
            kind=self.kind_combo.currentData(),
            state_dir=self.state_dir_edit.text().strip() or None,
            endpoint=self.endpoint_edit.text().strip(),
            region=self.region_edit.text().strip(),
            credentials=self.cred_combo.currentData(),
            aws_profile=self.aws_profile_edit.text().strip(),
            access_key_id=self.key_id_edit.text().strip(),
            bluetooth=self.bluetooth_combo.currentData() or "",
            extra=dict(base.extra) if base else {},
        )

    def _kind_changed(self, *_args) -> None:
        index = 0 if self.kind_combo.currentData() == "sandbox" else 1
        self.kind_stack.setCurrentIndex(index)
        self.kind_stack.updateGeometry()
        self._cred_changed()

    def _cloud_state(self, *_args) -> None:
        """What the active sandbox is doing now (it may not be the profile being edited)."""
        active = self.ctx.profile
        if get_cloud_backend(active).state_dir is None:  # a remote cloud: no local sandbox
            self.sandbox_status.setText(f"not in use (the active profile {active.name} is an AWS account)")
            return
        state = self.ctx.cloud
        where = state.endpoint.get("state_dir") or active.state_dir or str(sandbox_state_dir())
        self.sandbox_status.setText(f"{state.describe()} — profile {active.name}, state in {home_relative(where)}")

    def _cred_changed(self, *_args) -> None:
        src = self.cred_combo.currentData()
        for widget, visible in (
            (self.aws_profile_edit, src == "aws-profile"),
            (self.key_id_edit, src == "keyring"),
            (self.secret_edit, src == "keyring"),
        ):
            self._aws_form.setRowVisible(widget, visible)

    def _browse_state_dir(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Sandbox state directory", self.state_dir_edit.text())
        if path:
            self.state_dir_edit.setText(path)

    # -- save ---------------------------------------------------------------------------
    def _field_for(self, text: str) -> QLineEdit | None:
        """The input a validation message is about (so it can be marked), if one is named."""
        low = text.lower()
        for needle, field in (("profile name", self.name_edit), ("exists already", self.name_edit),
                              ("endpoint", self.endpoint_edit), ("region", self.region_edit),
                              ("aws profile", self.aws_profile_edit), ("secret access key", self.secret_edit),
                              ("access key", self.key_id_edit), ("state dir", self.state_dir_edit)):
            if needle in low and field.isVisibleTo(self):
                return field
        return None

    def _mark_field(self, field: QLineEdit | None) -> None:
        for edit in (self.name_edit, self.endpoint_edit, self.region_edit, self.aws_profile_edit,
                     self.key_id_edit, self.secret_edit, self.state_dir_edit):
            edit.setStyleSheet("border: 1px solid #b3261e;" if edit is field else "")
            edit.setProperty("problem", edit is field)
        if field is not None:
            field.setFocus()

    def show_message(self, text: str, ok: bool = False) -> None:
        """Show a validation/result message under the form (red unless ``ok``); a field it
        names is outlined and focused."""
        self._mark_field(None if ok or not text else self._field_for(text.split("\n")[0]))
        self.message.setText(text)
        self.message.setProperty("ok", ok)
        self.message.setStyleSheet("" if not text else ("color: #1b7f3b;" if ok else "color: #b3261e;"))

    def save(self) -> bool:
        """Validate, store the secret in the keyring, save the profiles and make this one active.

        Returns:
            True when saved; False with a message shown otherwise (nothing is lost: the
            form keeps what was typed).
        """
        p = self.form_profile()
        if self.profile_combo.currentData() is None and p.name in self.ctx.profiles.items:
            self.show_message(f"a profile named {p.name!r} exists already: pick another name")
            return False
        try:
            check_fields(p)
            secret = self.secret_edit.text()
            if get_cloud_backend(p).keyring_secret:
                self._store_secret(p, secret)
        except ConfigError as exc:
            self.show_message(exc.message + (f"\n→ {exc.advice}" if exc.advice else ""))
            return False
        items = dict(self.ctx.profiles.items)
        items[p.name] = p
        profiles = Profiles(active=p.name, items=items)
        try:
            profiles.save()
        except (ConfigError, OSError) as exc:
            self.show_message(f"could not save the profiles: {exc}")
            return False
        self.secret_edit.clear()
        self.ctx.set_profiles(profiles)
        self._fill_combo(p.name)
        self.show_message(f"Saved. Active profile: {p.name}.", ok=True)
        self.saved.emit(profiles)
        return True

    @staticmethod
    def _store_secret(p: Profile, secret: str) -> None:
        from keyring.errors import KeyringError

        try:
            if secret:
                p.set_secret_key(secret)
            elif not p.secret_key():
                raise ConfigError(
                    f"profile {p.name!r}: no secret access key is stored for {p.access_key_id}",
                    "type the secret access key; it is kept in the OS keyring, never in a file",
                )
        except KeyringError as exc:
            raise ConfigError(
                f"the OS keyring is not available ({exc})",
                "unlock or install a keyring (GNOME Keyring, KWallet, macOS Keychain, Windows "
                "Credential Manager), or use the 'Default chain' / 'Named AWS CLI profile' source",
            ) from exc


def create_page(ctx: AppContext) -> QWidget:
    """Page factory for the main window registry."""
    return SettingsPage(ctx)
