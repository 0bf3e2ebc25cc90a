"""The fleet index and dynamic groups survive a sandbox restart; a restart shows every device offline."""

from __future__ import annotations

import json


def test_index_survives_restart(tmp_path):
    import boto3

    from fleetdesk.sandbox.child import start_sandbox, stop_sandbox

    state = tmp_path / "state"
    proc, info = start_sandbox(state)
    try:
        iot = boto3.client("iot", **info.boto3_kwargs())
        data = boto3.client("iot-data", **info.boto3_kwargs())
        iot.update_indexing_configuration(thingIndexingConfiguration={
            "thingIndexingMode": "REGISTRY_AND_SHADOW", "thingConnectivityIndexingMode": "STATUS"})
        for i in range(3):
            iot.create_thing(thingName=f"r-{i}")
        data.update_thing_shadow(thingName="r-1", payload=json.dumps({"state": {"reported": {"temp": 30}}}))
        iot.create_dynamic_thing_group(thingGroupName="warm", queryString="shadow.reported.temp:[25 TO *]")
    finally:
        stop_sandbox(proc)
    proc, info = start_sandbox(state)
    try:
        iot = boto3.client("iot", **info.boto3_kwargs())
        data = boto3.client("iot-data", **info.boto3_kwargs())
        assert [t["thingName"] for t in iot.search_index(queryString="thingName:r-*")["things"]] == ["r-0", "r-1", "r-2"]
        assert iot.list_things_in_thing_group(thingGroupName="warm")["things"] == ["r-1"]
        data.update_thing_shadow(thingName="r-2", payload=json.dumps({"state": {"reported": {"temp": 26}}}))
        from helpers_sandbox import poll

        poll(lambda: sorted(iot.list_things_in_thing_group(thingGroupName="warm")["things"]) == ["r-1", "r-2"],
             timeout=5)
    finally:
        stop_sandbox(proc)
