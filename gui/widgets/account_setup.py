"""Settings → "Set up this account for Fleetdesk": the one-time setup the fleet dashboard runs on.

Shows what :mod:`fleetdesk.cloud.account_setup` will create in the active profile's account
(fleet indexing, the telemetry table with its TTL, the rule, the device policy; on AWS the
cost drivers too), asks, then creates only what is missing. The work runs in a worker thread.
"""

from __future__ import annotations

from PySide6.QtWidgets import QGroupBox, QLabel, QMessageBox, QPushButton, QVBoxLayout, QWidget

from fleetdesk_gui import bridge
from fleetdesk_gui.context import AppContext
from fleetdesk_gui.widgets.error_text import error_text


class AccountSetupBox(QGroupBox):
    """The setup button and its result line.

    Attributes:
        confirm: ``confirm(text) -> bool`` asks before creating anything (a dialog; tests replace it).
        last_plan: the plan last shown (``fleetdesk.cloud.account_setup.Plan``).
    """

    def __init__(self, ctx: AppContext, parent: QWidget | None = None) -> None:
        super().__init__("Dashboard for large fleets", parent)
        self.ctx = ctx
        self.setObjectName("accountSetup")
        layout = QVBoxLayout(self)
        intro = QLabel("Fleet indexing, a rule that stores every reading in DynamoDB, and the device policy: "
                       "the Fleet page then pages the index and history covers the hours the app was closed.")
        intro.setWordWrap(True)
        layout.addWidget(intro)
        self.button = QPushButton("Set up this account for Fleetdesk…")
        self.button.setObjectName("accountSetupButton")
        layout.addWidget(self.button)
        self.result = QLabel("")
        self.result.setObjectName("accountSetupResult")
        self.result.setWordWrap(True)
        layout.addWidget(self.result)
        self.confirm = self._ask
        self.last_plan = None
        self.button.clicked.connect(self.start)

    def _ask(self, text: str) -> bool:
        return QMessageBox.question(self, "Set up this account", text) == QMessageBox.StandardButton.Yes

    def _say(self, text: str, ok: bool = True) -> None:
        self.result.setText(text)
        self.result.setStyleSheet("" if ok else "color: #b3261e;")

    def start(self) -> None:
        """Look at the account, show the plan, ask, apply (each step off the Qt thread)."""
        profile = self.ctx.profile
        self.button.setEnabled(False)
        self._say(f"Looking at the account of profile {profile.name}…")

        def look():
            from fleetdesk.cloud import account_setup
            from fleetdesk.cloud.backend import get_cloud_backend
            from fleetdesk.cloud.setup_cli import clients

            iot, dynamodb, iam = clients(profile)
            return account_setup.plan(iot, dynamodb, iam), get_cloud_backend(profile).billed

        bridge.run_blocking(look, on_done=lambda r, e: self._planned(profile, r, e))

    def _planned(self, profile, result, error) -> None:
        from fleetdesk.cloud.account_setup import COST_NOTE

        if error is not None:
            self.button.setEnabled(True)
            self._say(f"Could not look at the account: {error_text(error)}", ok=False)
            return
        plan, billed = result
        self.last_plan = plan
        if not plan.needed:
            self.button.setEnabled(True)
            self._say("This account is set up for Fleetdesk: everything is in place.")
            return
        text = plan.text() + ("\n\n" + COST_NOTE if billed else "") + "\n\nCreate what is missing?"
        if not self.confirm(text):
            self.button.setEnabled(True)
            self._say("Nothing changed.")
            return
        self._say("Setting up…")

        def do():
            from fleetdesk.cloud import account_setup
            from fleetdesk.cloud.setup_cli import clients

            return account_setup.apply(*clients(profile))

        bridge.run_blocking(do, on_done=self._applied)

    def _applied(self, plan, error) -> None:
        self.button.setEnabled(True)
        if error is not None:
            self._say(f"Setup failed: {error_text(error)}", ok=False)
            return
        made = [s.what for s in plan.steps if s.action != "ok"]
        self._say("Done: " + "; ".join(made) + ". The Fleet page uses the index from its next start.")
