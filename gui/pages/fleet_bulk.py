"""The Fleet page's bulk actions: set desired, reboot and start a job on the selected rows, or
with "All matching" on every thing the index query matches (all pages, not only the one shown).

The work is :mod:`fleetdesk_gui.actions` (shadow updates and RPCs over the session) and the
index's :meth:`~fleetdesk.cloud.fleet_index.FleetIndex.all_names`, run through the bridge; the
result is one line under the table.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QObject

from fleetdesk_gui import actions, bridge
from fleetdesk_gui.widgets.error_text import error_text

if TYPE_CHECKING:
    from fleetdesk_gui.pages.fleet import FleetPage


class BulkActions(QObject):
    """What the Set desired, Reboot and Start job buttons do."""

    def __init__(self, page: FleetPage) -> None:
        super().__init__(page)
        self.page = page

    def with_targets(self, fn) -> None:
        """Call ``fn(names)`` with the bulk action's targets: the selected rows, or with "All matching"
        every thing the query matches (paged from the index in a worker thread)."""
        if not self.page.all_matching():
            names = self.page.selected()
            if names:
                fn(names)
            return
        index, query = self.page.indexed.index, self.page.current_query()
        self.page.show_message(f"finding every thing that matches {query}…")

        def done(names, error) -> None:
            if error is not None:
                self.page.show_message(f"fleet index: {error_text(error)}", ok=False)
            elif not names:
                self.page.show_message("nothing matches the filter", ok=False)
            else:
                fn(names)
        bridge.run_blocking(index.all_names, query, on_done=done)

    def start_job(self, names: list[str]) -> None:
        session = self.page.ctx.live.session
        if self.page.indexed.active and session is not None:
            for name in names:  # a session on the index lists no registry: the Jobs form lists these
                session.fleet.thing(name)
        self.page.ctx.navigate.emit("Jobs", {"things": names})

    def ask_set_desired(self, names: list[str]) -> None:
        from fleetdesk_gui.widgets.desired_dialog import DesiredDialog

        dialog = DesiredDialog(len(names), self.page)  # only values the firmware takes can be confirmed
        if dialog.exec():
            self.set_desired(names, *dialog.result_value())

    def set_desired(self, names: list[str], key: str, value) -> None:
        """Set ``desired.key = value`` on ``names`` (result shown under the table)."""
        session = self.page.ctx.live.session
        if session is None:
            return
        self.page.show_message(f"setting desired.{key} on {len(names)} thing(s)…")
        bridge.submit(actions.set_desired(session, names, key, value),
                      lambda r, e: self.done(f"desired.{key}", r, e))

    def reboot(self, names: list[str]) -> None:
        session = self.page.ctx.live.session
        if session is None:
            return
        self.page.show_message(f"asking {len(names)} thing(s) to reboot…")
        bridge.submit(actions.reboot(session, names), lambda r, e: self.done("reboot", r, e))

    def done(self, what: str, result, error) -> None:
        if error is not None:
            self.page.show_message(f"{what}: {error_text(error)}", ok=False)
            return
        ok, failed = result
        self.page.show_message(actions.summary(what, ok, failed), ok=not failed)
