"""Settings → Set up this account for Fleetdesk: shows the plan, asks, creates, and is then in place."""

from __future__ import annotations

import asyncio

import pytest

from gui_testutil import until

pytestmark = [pytest.mark.gui, pytest.mark.timeout(120)]


def test_settings_sets_up_the_account(app_window, sandbox, qloop, monkeypatch):
    import boto3

    from fleetdesk.cloud import account_setup

    monkeypatch.setenv("FLEETDESK_SANDBOX_DIR", sandbox.state_dir)  # the default sandbox profile's state
    iot = boto3.client("iot", **sandbox.boto3_kwargs())
    ddb = boto3.client("dynamodb", **sandbox.boto3_kwargs())
    ctx, win = app_window
    page = win.show_page("Settings")
    box = page.account_setup
    asked: list[str] = []
    box.confirm = lambda text: asked.append(text) or True
    try:
        async def scenario():
            box.button.click()
            await until(lambda: box.result.text().startswith("Done:"), 60, what="setup done")
            assert "will create" in asked[0] and account_setup.TABLE in asked[0]
            box.button.click()
            await until(lambda: "everything is in place" in box.result.text(), 60, what="the second run finds it all")
            assert len(asked) == 1  # nothing to ask the second time

        qloop.run_until_complete(asyncio.wait_for(scenario(), 100))
        assert iot.get_topic_rule(ruleName=account_setup.RULE)["rule"]["sql"] == account_setup.RULE_SQL
    finally:  # the session sandbox is shared: leave it as it was
        iot.update_indexing_configuration(thingIndexingConfiguration={"thingIndexingMode": "OFF"})
        try:
            iot.delete_topic_rule(ruleName=account_setup.RULE)
        except Exception:  # noqa: BLE001
            pass
        try:
            ddb.delete_table(TableName=account_setup.TABLE)
        except Exception:  # noqa: BLE001
            pass
