"""Shadow service against a running sandbox with the real awsiotsdk IotShadowClientV2 and boto3."""

from __future__ import annotations

import json
import threading

import pytest
from awsiot import ServiceStreamOptions, V2ServiceException, iotshadow

from .conftest import result, rr_options

pytestmark = pytest.mark.slow


@pytest.fixture
def shadow(device):
    return iotshadow.IotShadowClientV2(device.client, rr_options())


def test_get_update_delta_stream_and_boto3(device, shadow, data):
    thing = device.thing
    with pytest.raises(V2ServiceException) as e:
        result(shadow.get_shadow(iotshadow.GetShadowRequest(thing_name=thing)))
    assert e.value.modeled_error.code == 404
    assert e.value.modeled_error.message == f"No shadow exists with name: '{thing}'"

    deltas, got = [], threading.Event()

    def on_delta(ev):
        deltas.append(ev)
        got.set()

    subscribed = threading.Event()
    stream = shadow.create_shadow_delta_updated_stream(
        iotshadow.ShadowDeltaUpdatedSubscriptionRequest(thing_name=thing),
        ServiceStreamOptions(on_delta, subscription_status_listener=lambda ev: subscribed.set()))
    stream.open()
    assert subscribed.wait(10)
    r = result(shadow.update_shadow(iotshadow.UpdateShadowRequest(
        thing_name=thing, state=iotshadow.ShadowState(reported={"on": False, "refresh": 5000}), client_token="x")))
    assert r.version == 1 and r.state.reported == {"on": False, "refresh": 5000}

    data.update_thing_shadow(thingName=thing, payload=json.dumps({"state": {"desired": {"on": True}}}))
    assert got.wait(10), "no delta event"
    assert deltas[-1].state == {"on": True}

    r = result(shadow.update_shadow(iotshadow.UpdateShadowRequest(
        thing_name=thing, state=iotshadow.ShadowState(reported={"on": True}))))
    doc = result(shadow.get_shadow(iotshadow.GetShadowRequest(thing_name=thing)))
    assert doc.version == r.version
    assert doc.state.reported == {"on": True, "refresh": 5000}
    assert doc.state.delta is None


def test_version_conflict_is_409(device, shadow):
    thing = device.thing
    r = result(shadow.update_shadow(iotshadow.UpdateShadowRequest(
        thing_name=thing, state=iotshadow.ShadowState(desired={"a": 1}))))
    with pytest.raises(V2ServiceException) as e:
        result(shadow.update_shadow(iotshadow.UpdateShadowRequest(
            thing_name=thing, state=iotshadow.ShadowState(desired={"a": 2}), version=r.version + 5)))
    assert e.value.modeled_error.code == 409
    ok = result(shadow.update_shadow(iotshadow.UpdateShadowRequest(
        thing_name=thing, state=iotshadow.ShadowState(desired={"a": 2}), version=r.version)))
    assert ok.version == r.version + 1


def test_named_shadows_over_mqtt_and_list(device, shadow, data):
    thing = device.thing
    for name in ("cfg", "ota"):
        result(shadow.update_named_shadow(iotshadow.UpdateNamedShadowRequest(
            thing_name=thing, shadow_name=name, state=iotshadow.ShadowState(reported={"n": name}))))
    got = result(shadow.get_named_shadow(iotshadow.GetNamedShadowRequest(thing_name=thing, shadow_name="cfg")))
    assert got.state.reported == {"n": "cfg"}
    assert data.list_named_shadows_for_thing(thingName=thing)["results"] == ["cfg", "ota"]
    result(shadow.delete_named_shadow(iotshadow.DeleteNamedShadowRequest(thing_name=thing, shadow_name="ota")))
    assert data.list_named_shadows_for_thing(thingName=thing)["results"] == ["cfg"]
    with pytest.raises(V2ServiceException) as e:
        result(shadow.get_named_shadow(iotshadow.GetNamedShadowRequest(thing_name=thing, shadow_name="ota")))
    assert e.value.modeled_error.code == 404


@pytest.mark.parametrize("payload,code", [
    (b"{not json", 400),
    (json.dumps({"state": {"desired": {"a": {"b": {"c": {"d": {"e": {"f": {"g": 1}}}}}}}},
                 "clientToken": "deep"}).encode(), 400),
    (json.dumps({"state": {"reported": {"x": "y" * 9000}}, "clientToken": "big"}).encode(), 413),
    (json.dumps({"state": {"reported": {"x": 1}}, "clientToken": "t" * 65}).encode(), 400),
])
def test_bad_updates_rejected_on_topic_with_code_and_token(device, payload, code):
    base = f"$aws/things/{device.thing}/shadow/update"
    device.subscribe(base + "/rejected")
    device.publish(base, payload)
    err = device.expect(base + "/rejected")
    assert err["code"] == code and "message" in err and "timestamp" in err
    token = json.loads(payload).get("clientToken") if payload.startswith(b"{\"") else None
    assert err.get("clientToken") == token


def test_device_cannot_touch_another_things_shadow(device, iot, sandbox, clients, data):
    from fleetdesk.cloud.identity import create_device_identity

    from .conftest import mtls_builder

    other = device.thing + "-b"
    ident = create_device_identity(iot, other)
    dev_b = clients(mtls_builder(sandbox, ident.certificate_pem, ident.private_key_pem, other))
    assert dev_b.connect()
    ack = dev_b.publish(f"$aws/things/{device.thing}/shadow/update",
                        json.dumps({"state": {"reported": {"hacked": True}}}).encode())
    assert ack.puback.reason_code != 0  # refused by the broker's per-thing ACL
    with pytest.raises(data.exceptions.ResourceNotFoundException):  # B's write created nothing
        data.get_thing_shadow(thingName=device.thing)


def test_iot_data_publish_reaches_subscribers_and_retains(device, data):
    topic = f"{device.thing}/cmd"
    data.publish(topic=topic, qos=1, retain=True, payload=json.dumps({"n": 1}).encode())
    assert device.subscribe(topic) < 128  # subscribed after the publish: the retained copy arrives
    assert device.expect(topic) == {"n": 1}
    data.publish(topic=topic, qos=0, payload=json.dumps({"n": 2}).encode())
    assert device.expect(topic) == {"n": 2}
