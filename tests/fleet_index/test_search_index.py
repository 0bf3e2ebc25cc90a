"""Fleet indexing in the sandbox, driven by boto3 unchanged: configuration, SearchIndex, aggregations,
dynamic groups as job targets, and the index following registry, shadow and presence changes."""

from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError
from helpers_sandbox import Mqtt5, mtls_builder, poll

CONFIG = {"thingIndexingMode": "REGISTRY_AND_SHADOW", "thingConnectivityIndexingMode": "STATUS",
          "customFields": [{"name": "shadow.reported.temp", "type": "Number"},
                           {"name": "attributes.fw", "type": "String"}]}


def names(iot, query: str, **kw) -> list[str]:
    out, token = [], None
    while True:
        page = iot.search_index(queryString=query, **({"nextToken": token} if token else {}), **kw)
        out += [t["thingName"] for t in page["things"]]
        token = page.get("nextToken")
        if not token:
            return out


def code(exc: pytest.ExceptionInfo) -> str:
    return exc.value.response["Error"]["Code"]


@pytest.fixture(scope="module")
def fleet(iot, data):
    """Indexing on; eight things with attributes, a type, a group and shadows."""
    with pytest.raises(ClientError) as off:
        iot.search_index(queryString="*")
    assert code(off) == "ResourceNotFoundException"
    iot.update_indexing_configuration(thingIndexingConfiguration=CONFIG)
    iot.create_thing_type(thingTypeName="sensor")
    iot.create_thing_group(thingGroupName="lab")
    for i in range(8):
        name = f"fx-{i}"
        typed = {"thingTypeName": "sensor"} if i % 2 else {}
        iot.create_thing(thingName=name, attributePayload={"attributes": {"fw": "1.0" if i < 5 else "2.0"}}, **typed)
        data.update_thing_shadow(thingName=name, payload=json.dumps({"state": {"reported": {"temp": 20 + i}}}))
    iot.add_thing_to_thing_group(thingGroupName="lab", thingName="fx-0")
    poll(lambda: len(names(iot, "shadow.reported.temp:*")) == 8, timeout=10)
    return [f"fx-{i}" for i in range(8)]


def test_configuration_round_trips_and_refuses_what_aws_refuses(iot, fleet):
    got = iot.get_indexing_configuration()["thingIndexingConfiguration"]
    assert got["thingIndexingMode"] == "REGISTRY_AND_SHADOW" and got["thingConnectivityIndexingMode"] == "STATUS"
    assert {"name": "connectivity.connected", "type": "Boolean"} in got["managedFields"]
    assert {"name": "shadow.reported.temp", "type": "Number"} in got["customFields"]
    with pytest.raises(ClientError) as bad:
        iot.update_indexing_configuration(thingIndexingConfiguration={
            "thingIndexingMode": "REGISTRY", "customFields": [{"name": "shadow.reported.x", "type": "Number"}]})
    assert code(bad) == "InvalidRequestException" and "REGISTRY_AND_SHADOW" in str(bad.value)
    assert iot.get_indexing_configuration()["thingIndexingConfiguration"]["thingIndexingMode"] == "REGISTRY_AND_SHADOW"


def test_search_syntax_over_registry_shadow_and_groups(iot, fleet):
    assert names(iot, "thingName:fx-*") == fleet
    assert names(iot, "thingTypeName:sensor") == ["fx-1", "fx-3", "fx-5", "fx-7"]
    assert names(iot, "thingGroupNames:lab") == ["fx-0"]
    assert names(iot, "attributes.fw:2.0 AND shadow.reported.temp:[26 TO *]") == ["fx-6", "fx-7"]
    assert names(iot, "shadow.reported.temp:{20 TO 22]") == ["fx-1", "fx-2"]
    assert names(iot, "thingName:fx-* AND NOT thingTypeName:sensor AND -thingName:fx-0") == ["fx-2", "fx-4", "fx-6"]
    doc = iot.search_index(queryString="thingName:fx-3")["things"][0]
    assert doc["thingTypeName"] == "sensor" and doc["attributes"] == {"fw": "1.0"}
    assert json.loads(doc["shadow"])["reported"] == {"temp": 23}
    assert doc["connectivity"] == {"connected": False}


def test_paging_follows_next_token_within_aws_page_limit(iot, fleet):
    page = iot.search_index(queryString="thingName:fx-*", maxResults=3)
    assert [t["thingName"] for t in page["things"]] == ["fx-0", "fx-1", "fx-2"] and page["nextToken"]
    assert names(iot, "thingName:fx-*", maxResults=3) == fleet
    with pytest.raises(ClientError) as big:
        iot.search_index(queryString="*", maxResults=101)
    assert code(big) == "InvalidRequestException" and "100" in str(big.value)


def test_a_query_aws_rejects_gets_invalid_query_exception(iot, fleet):
    with pytest.raises(ClientError) as bad:
        iot.search_index(queryString="thingName:(fx-1 OR")
    assert code(bad) == "InvalidQueryException"
    assert bad.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_aggregations(iot, fleet):
    st = iot.get_statistics(queryString="thingName:fx-*", aggregationField="shadow.reported.temp")["statistics"]
    assert (st["count"], st["minimum"], st["maximum"], st["average"]) == (8, 20, 27, 23.5)
    assert iot.get_statistics(queryString="thingName:fx-*")["statistics"] == {"count": 8}
    everything = iot.get_statistics(queryString="*", aggregationField="shadow.reported.temp")["statistics"]
    assert (everything["count"], everything["maximum"]) == (8, 27)  # "*" takes the no-filter path
    assert iot.get_buckets_aggregation(queryString="*", aggregationField="attributes.fw", bucketsAggregationType={
        "termsAggregation": {"maxBuckets": 10}})["buckets"] == [
        {"keyValue": "1.0", "count": 5}, {"keyValue": "2.0", "count": 3}]
    buckets = iot.get_buckets_aggregation(queryString="thingName:fx-*", aggregationField="attributes.fw",
                                          bucketsAggregationType={"termsAggregation": {"maxBuckets": 10}})
    assert buckets["totalCount"] == 8
    assert buckets["buckets"] == [{"keyValue": "1.0", "count": 5}, {"keyValue": "2.0", "count": 3}]
    online = iot.get_buckets_aggregation(queryString="thingName:fx-*", aggregationField="connectivity.connected",
                                         bucketsAggregationType={"termsAggregation": {"maxBuckets": 2}})
    assert online["buckets"] == [{"keyValue": "false", "count": 8}]
    assert iot.get_cardinality(queryString="thingName:fx-*", aggregationField="attributes.fw")["cardinality"] == 2
    with pytest.raises(ClientError) as unindexed:
        iot.get_statistics(queryString="*", aggregationField="shadow.reported.humidity")
    assert code(unindexed) == "InvalidAggregationException" and "customFields" in str(unindexed.value)


def test_index_follows_registry_and_shadow_changes(iot, data, fleet):
    iot.update_thing(thingName="fx-4", attributePayload={"attributes": {"fw": "3.0"}, "merge": True})
    assert names(iot, "attributes.fw:3.0") == ["fx-4"]  # registry changes are in before the call returns
    data.update_thing_shadow(thingName="fx-4", payload=json.dumps({"state": {"reported": {"temp": 99}}}))
    poll(lambda: names(iot, "shadow.reported.temp:99") == ["fx-4"])
    iot.create_thing(thingName="fx-new")
    assert "fx-new" in names(iot, "thingName:fx-*")
    iot.delete_thing(thingName="fx-new")
    assert "fx-new" not in names(iot, "thingName:fx-*")


def test_connectivity_follows_a_real_device(own_sandbox, iot):
    from fleetdesk.cloud.identity import create_device_identity

    ident = create_device_identity(iot, "fx-live")
    dev = Mqtt5(mtls_builder(own_sandbox, ident.certificate_pem, ident.private_key_pem, "fx-live"))
    try:
        assert dev.connect(), dev.failure
        poll(lambda: names(iot, "connectivity.connected:true") == ["fx-live"])
    finally:
        dev.stop()
    doc = poll(lambda: [t for t in iot.search_index(queryString="thingName:fx-live")["things"]
                        if not t["connectivity"]["connected"]])[0]
    assert doc["connectivity"]["disconnectReason"] == "CLIENT_INITIATED_DISCONNECT"
    assert doc["connectivity"]["timestamp"] > 0


def test_dynamic_group_membership_follows_the_query_and_targets_a_job(iot, data, fleet):
    made = iot.create_dynamic_thing_group(thingGroupName="hot", queryString="shadow.reported.temp:[26 TO *]")
    assert made["queryString"] == "shadow.reported.temp:[26 TO *]" and made["indexName"] == "AWS_Things"
    in_group = lambda: sorted(iot.list_things_in_thing_group(thingGroupName="hot")["things"])  # noqa: E731
    assert in_group() == ["fx-4", "fx-6", "fx-7"]
    data.update_thing_shadow(thingName="fx-0", payload=json.dumps({"state": {"reported": {"temp": 40}}}))
    data.update_thing_shadow(thingName="fx-7", payload=json.dumps({"state": {"reported": {"temp": 10}}}))
    poll(lambda: in_group() == ["fx-0", "fx-4", "fx-6"])
    assert "hot" in iot.search_index(queryString="thingName:fx-0")["things"][0]["thingGroupNames"]
    with pytest.raises(ClientError) as bad:
        iot.create_dynamic_thing_group(thingGroupName="bad", queryString="thingName:a@b")
    assert code(bad) == "InvalidQueryException"
    with pytest.raises(ClientError) as static:
        iot.add_thing_to_thing_group(thingGroupName="hot", thingName="fx-1")
    assert code(static) == "InvalidRequestException" and "dynamic" in str(static.value)
    job = iot.create_job(jobId="hot-job", targets=[made["thingGroupArn"]], document=json.dumps({"op": "x"}),
                         targetSelection="CONTINUOUS")
    assert job["jobId"] == "hot-job"
    targets = poll(lambda: sorted(e["thingArn"].rsplit("/", 1)[1] for e in
                                  iot.list_job_executions_for_job(jobId="hot-job")["executionSummaries"]))
    assert targets == ["fx-0", "fx-4", "fx-6"]
    with pytest.raises(ClientError) as off:
        iot.update_indexing_configuration(thingIndexingConfiguration={"thingIndexingMode": "OFF"})
    assert code(off) == "InvalidRequestException" and "dynamic thing groups" in str(off.value)
