"""A new user's sandbox is ready for the dashboard as soon as the app starts it: the telemetry rule
and its DynamoDB table are there (no "run `fleetdesk cloud setup`" on the first Device page); fleet
indexing stays off until asked for (the Fleet page follows a small fleet directly)."""

from __future__ import annotations

import asyncio

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


def test_the_app_gives_a_new_sandbox_the_telemetry_rule_and_table(tmp_path):
    from fleetdesk.cloud import account_setup
    from fleetdesk.cloud.backend import get_cloud_backend
    from fleetdesk.cloud.runtime import CloudRuntime
    from fleetdesk.config import Profile

    profile = Profile(name="new-user", kind="sandbox", state_dir=str(tmp_path / "sandbox"))
    states = []
    rt = CloudRuntime(connect=False, port_base=0, on_state=states.append)

    async def run():
        await rt.apply(profile)
        try:
            backend = get_cloud_backend(profile)
            iot, ddb = backend.client("iot"), backend.client("dynamodb")
            plan = await asyncio.to_thread(account_setup.plan, iot, ddb)
            todo = {s.what.split(" (")[0]: s.action for s in plan.steps}
            assert todo.pop("fleet indexing") == "create", plan.text()
            assert set(todo.values()) == {"ok"}, plan.text()
            assert iot.get_topic_rule(ruleName=account_setup.RULE)["rule"]["sql"] == account_setup.RULE_SQL
            assert ddb.describe_table(TableName=account_setup.TABLE)["Table"]["TableStatus"] == "ACTIVE"
        finally:
            await rt.shutdown()

    asyncio.run(run())
    assert any(s.phase == "running" for s in states), states
