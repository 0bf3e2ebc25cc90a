"""Fleet page on the fleet index: one SearchIndex page at a time filtered on the server, tiles from
aggregations, paging, and a query the index refuses explained under the filter box."""

from __future__ import annotations

import asyncio
import json

import pytest

from gui_testutil import until

pytestmark = [pytest.mark.gui, pytest.mark.timeout(180)]


@pytest.fixture
def indexed_fleet(sandbox):
    """Indexing on in the session sandbox with 130 things fip-NNN (off again afterwards)."""
    import boto3

    from fleetdesk.cloud import account_setup

    iot = boto3.client("iot", **sandbox.boto3_kwargs())
    data = boto3.client("iot-data", **sandbox.boto3_kwargs())
    iot.update_indexing_configuration(thingIndexingConfiguration=account_setup.INDEXING)
    try:
        iot.create_thing_group(thingGroupName="fip-hall")
    except iot.exceptions.ResourceAlreadyExistsException:
        pass  # a second test of this module on the session sandbox
    for i in range(130):
        name = f"fip-{i:03d}"
        iot.create_thing(thingName=name)
        data.update_thing_shadow(thingName=name, payload=json.dumps({"state": {"reported": {
            "temperature": 15 + i % 20, "humidity": 40, "firmware_version": "1.2.0" if i % 3 else "1.1.0"}}}))
    for i in range(3):
        iot.add_thing_to_thing_group(thingGroupName="fip-hall", thingName=f"fip-{i:03d}")
    try:
        yield iot
    finally:
        iot.update_indexing_configuration(thingIndexingConfiguration={"thingIndexingMode": "OFF"})


def _names(page) -> list[str]:
    return sorted(page.proxy.data(page.proxy.index(r, 0)) for r in range(page.proxy.rowCount()))


def test_fleet_page_pages_the_index_with_server_side_filter(app_window, cloud_session, indexed_fleet, qloop,
                                                             sandbox):
    sandbox_info = sandbox
    ctx, win = app_window
    page = win.show_page("Fleet")
    ctx.live.attach(cloud_session)

    async def scenario():
        await until(lambda: page.index_mode, 30, what="the page switching to the fleet index")
        page.filter_edit.setText("fip")
        await until(lambda: page.page_label.text() == "Page 1 · things 1–100" and _names(page)[0] == "fip-000",
                    30, what="the first page of fip things")
        assert page.proxy.rowCount() == 100 and page.next_button.isEnabled() and not page.prev_button.isEnabled()
        await until(lambda: page.summary.text().startswith("130 things · 0 online"), 30, what="tiles: online count")
        assert "1.2.0 ×86" in page.tiles.text() and "1.1.0 ×44" in page.tiles.text()
        assert "temperature 15.0–34.0 °C" in page.tiles.text()
        page.next_button.click()
        await until(lambda: page.page_label.text() == "Page 2 · things 101–130", 30, what="page 2")
        assert _names(page) == [f"fip-{i:03d}" for i in range(100, 130)]
        assert page.prev_button.isEnabled() and not page.next_button.isEnabled()
        page.filter_edit.setText("thingName:(fip")
        await until(lambda: "refused the query" in page.message.text(), 30, what="the index's refusal explained")
        assert "refused the query" in page.filter_edit.toolTip()
        page.filter_edit.setText("shadow.reported.temperature:[33 TO *] AND thingName:fip*")
        await until(lambda: page.proxy.rowCount() == 12 and not page.filter_edit.toolTip(), 30,
                    what="a range query typed in the filter box")
        page.filter_edit.setText("")
        await until(lambda: page.group_combo.findData("fip-hall") > 0, 30, what="groups listed")
        page.group_combo.setCurrentIndex(page.group_combo.findData("fip-hall"))
        await until(lambda: _names(page) == ["fip-000", "fip-001", "fip-002"], 30, what="the group's things")
        # bulk actions on the query: every matching thing, not only the 100 rows of the page
        page.group_combo.setCurrentIndex(0)
        page.filter_edit.setText("fip")
        await until(lambda: page.page_label.text() == "Page 1 · things 1–100", 30, what="back to page 1")
        page.all_check.setChecked(True)
        assert page.set_desired_button.isEnabled() and not page.selected()
        targets: list[str] = []
        page.with_targets(targets.extend)
        await until(lambda: len(targets) == 130, 30, what="all 130 matching things as the targets")
        page.set_desired(targets, "on", True)
        await until(lambda: "desired.on: 130/130 things" in page.message.text(), 60, what="the bulk result")
        import boto3

        data = boto3.client("iot-data", **sandbox_info.boto3_kwargs())
        doc = json.loads(data.get_thing_shadow(thingName="fip-129")["payload"].read())
        assert doc["state"]["desired"]["on"] is True  # on page 2, never shown

    qloop.run_until_complete(asyncio.wait_for(scenario(), 170))


def test_fleet_page_on_an_indexed_session_follows_presence_only_for_the_rows_in_view(app_window, indexed_fleet,
                                                                                       qloop, sandbox, tmp_path):
    from fleetdesk.cloud.presence import FOLLOW_MAX
    from fleetdesk.cloud.session import CloudSession
    from fleetdesk.cloud.topics import PRESENCE_FILTER
    from fleetdesk.config import Profile

    ctx, win = app_window
    session = CloudSession(Profile(name="gui-scoped-presence", kind="sandbox", state_dir=sandbox.state_dir),
                           store=False)
    qloop.run_until_complete(asyncio.wait_for(session.start(), 60))
    page = win.show_page("Fleet")
    page.resize(900, 500)
    ctx.live.attach(session)

    async def scenario():
        assert session.indexed and session.presence.scoped
        assert PRESENCE_FILTER not in session.conn._subs  # no fleet-wide presence on the app's connection
        page.filter_edit.setText("fip")
        await until(lambda: page.index_mode and page.page_label.text() == "Page 1 · things 1–100", 30,
                    what="the first page of fip things")
        await until(lambda: session.presence.followed and
                    session.presence.followed == page.indexed.visible_names()[:FOLLOW_MAX], 10,
                    what=lambda: f"presence followed for the rows in view (following {session.presence.followed}, "
                                 f"in view {page.indexed.visible_names()})")
        assert session.presence.followed[0] == "fip-000" and len(page.indexed.visible_names()) < 100
        assert len(session.conn._subs) <= 50  # IoT Core's subscriptions per connection
        page.table.scrollToBottom()
        await until(lambda: "fip-099" in page.indexed.visible_names() and
                    session.presence.followed == page.indexed.visible_names()[:FOLLOW_MAX], 10,
                    what=lambda: f"presence following the scrolled rows (following {session.presence.followed})")
        assert "fip-000" not in session.presence.followed

    try:
        qloop.run_until_complete(asyncio.wait_for(scenario(), 120))
    finally:
        ctx.live.detach()
        qloop.run_until_complete(asyncio.wait_for(session.stop(), 60))
