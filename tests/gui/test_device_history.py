"""Device page history from the account's telemetry table: readings stored while the app was closed
are charted (and cached locally); without the table the page says what to run."""

from __future__ import annotations

import asyncio
import time

import pytest

from gui_testutil import until

pytestmark = [pytest.mark.gui, pytest.mark.timeout(120)]


def test_device_page_charts_history_from_dynamodb(app_window, cloud_session, sandbox, qloop):
    import boto3

    from fleetdesk.cloud import account_setup

    db = boto3.client("dynamodb", **sandbox.boto3_kwargs())
    db.create_table(TableName=account_setup.TABLE, BillingMode="PAY_PER_REQUEST",
                    KeySchema=[{"AttributeName": "thing", "KeyType": "HASH"}, {"AttributeName": "ts", "KeyType": "RANGE"}],
                    AttributeDefinitions=[{"AttributeName": "thing", "AttributeType": "S"},
                                          {"AttributeName": "ts", "AttributeType": "N"}])
    now = time.time()
    thing = "histgui-1"
    for i in range(12):  # what the rule wrote an hour ago, while no app was running
        t = now - 3600 + i * 60
        db.put_item(TableName=account_setup.TABLE, Item={
            "thing": {"S": thing}, "ts": {"N": str(int(t * 1000))}, "device_ts": {"N": str(int(t))},
            "temperature": {"N": str(20 + i)}, "humidity": {"N": "45"}, "seq": {"N": str(i)}})
    ctx, win = app_window
    ctx.live.attach(cloud_session)
    page = win.show_page("Device")

    async def scenario():
        ctx.navigate.emit("Device", thing)
        await until(lambda: thing in page.plot.keys() and len(page.plot.data(thing)[0]) == 12, 30,
                    what="an hour of history from DynamoDB in the chart")
        assert cloud_session.store.count(thing) == 12  # cached in the local store
        db.delete_table(TableName=account_setup.TABLE)
        page.load_history()
        await until(lambda: "does not exist" in page.export_label.text(), 30, what="the missing table explained")
        assert "fleetdesk cloud setup" in page.export_label.text()
        assert len(page.plot.data(thing)[0]) == 12  # the cached history still charts

    qloop.run_until_complete(asyncio.wait_for(scenario(), 100))


@pytest.fixture
def index_on(sandbox):
    """Fleet indexing on in the session sandbox (off again afterwards)."""
    import boto3

    iot = boto3.client("iot", **sandbox.boto3_kwargs())
    iot.update_indexing_configuration(thingIndexingConfiguration={"thingIndexingMode": "REGISTRY_AND_SHADOW",
                                                                  "thingConnectivityIndexingMode": "STATUS"})
    for name in ("watch-1", "watch-2", *(f"bulk-{i}" for i in range(30))):
        iot.create_thing(thingName=name)
    try:
        yield iot
    finally:
        iot.update_indexing_configuration(thingIndexingConfiguration={"thingIndexingMode": "OFF"})


def test_with_an_index_the_app_follows_only_the_open_device(app_window, index_on, cloud_session, sandbox, qloop):
    import json

    import boto3

    assert cloud_session.indexed
    subs = cloud_session.conn._subs
    assert "dt/+/env" not in subs, "the app's connection must not take every device's telemetry"
    assert not cloud_session.fleet.things, "no ListThings at start with an index"
    # left: replies to the app's own RPC calls, and presence (every device's connects: see README)
    assert not [f for f in subs if "+" in f and f not in ("+/rpc/resp", "$aws/events/presence/+/+")], \
        f"fleet-wide filters on the app's connection: {sorted(subs)}"
    data = boto3.client("iot-data", **sandbox.boto3_kwargs())
    data.update_thing_shadow(thingName="watch-1", payload=json.dumps({"state": {"reported": {"temperature": 21}}}))
    ctx, win = app_window
    ctx.live.attach(cloud_session)
    page = win.show_page("Device")

    async def scenario():
        ctx.navigate.emit("Device", "watch-1")
        await until(lambda: "dt/watch-1/env" in subs, 30, what="the open device's telemetry followed")
        await until(lambda: page.shadow.version is not None, 30, what="the open device's shadow loaded")
        assert "$aws/things/watch-1/shadow/+/+" in subs and len(subs) <= 50
        for seq in range(3):
            for name in ("watch-1", "watch-2"):
                data.publish(topic=f"dt/{name}/env", qos=1,
                             payload=json.dumps({"temperature": 20 + seq, "humidity": 40, "seq": seq}))
        await until(lambda: "watch-1" in page.plot.keys() and len(page.plot.data("watch-1")[0]) == 3, 30,
                    what="live readings of the open device in the chart")
        assert cloud_session.store.count("watch-2") == 0  # another device's readings never reach the app
        ctx.navigate.emit("Device", "watch-2")
        await until(lambda: "dt/watch-2/env" in subs and "dt/watch-1/env" not in subs, 30,
                    what="following moved to the newly opened device")
        # a bulk change on many things: each is followed while its request runs, never all at once
        ok, failed = await __import__("fleetdesk_gui.actions", fromlist=["set_desired"]).set_desired(
            cloud_session, [f"watch-{i}" for i in (1, 2)] + [f"bulk-{i}" for i in range(30)], "on", True)
        assert len(ok) == 32 and not failed and len(subs) <= 50

    qloop.run_until_complete(asyncio.wait_for(scenario(), 100))
