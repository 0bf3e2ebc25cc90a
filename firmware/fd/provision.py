# Fleet provisioning by claim (AWS IoT MQTT API, as awsiotsdk's identity client uses it):
# connect with the claim cert, CreateKeysAndCertificate, RegisterThing with the template,
# store the new cert/key (DER) and thing name in /config.json, then reconnect as the thing.
import json

from fd import compat, mqtt
from fd.compat import asyncio


async def provision(dev, timeout_ms=20000):
    """Returns the new thing name. Raises OSError / ValueError with a reason."""
    cfg = dev.config
    claim = cfg.claim
    template = claim["template"]
    cert, key = cfg.claim_creds()
    from fd import tls

    ctx = tls.tls_context(cfg.ca_der(), cert, key)
    client_id = cfg.thing_name or ("claim-" + dev.board.mac_hex)
    box = {}
    ev = asyncio.Event()

    def on_msg(topic, payload):
        box[topic] = payload
        ev.set()

    c = mqtt.MQTTClient(client_id, cfg.endpoint, cfg.port, ctx, keepalive=60, on_message=on_msg)
    await c.connect()
    try:
        base = "$aws/certificates/create/json"
        prov = "$aws/provisioning-templates/%s/provision/json" % template
        await c.subscribe([base + "/accepted", base + "/rejected", prov + "/accepted", prov + "/rejected"])
        await c.publish(base, "{}", qos=1)
        created = compat.loads(await _wait(box, ev, base, timeout_ms))
        params = {"SerialNumber": dev.board.mac_hex, "MacAddress": dev.board.mac_hex}
        if cfg.thing_name:
            params["ThingName"] = cfg.thing_name
        req = {"certificateOwnershipToken": created["certificateOwnershipToken"], "parameters": params}
        await c.publish(prov, json.dumps(req), qos=1)
        reg = compat.loads(await _wait(box, ev, prov, timeout_ms))
    finally:
        await c.disconnect()
    thing = reg.get("thingName") or cfg.thing_name
    if not thing:
        raise ValueError("RegisterThing returned no thing name")
    compat.write_bytes(dev.path("/certs/cert.der"), compat.pem_to_der(created["certificatePem"]))
    compat.write_private(dev.path("/certs/key.der"), compat.pem_to_der(created["privateKey"]))
    data = dict(cfg.data)
    data["thing_name"] = thing
    data["cert"] = "/certs/cert.der"
    data["key"] = "/certs/key.der"
    cfg.save(data)
    return thing


async def _wait(box, ev, base, timeout_ms):
    t0 = compat.ticks_ms()
    while True:
        if base + "/accepted" in box:
            return box.pop(base + "/accepted")
        if base + "/rejected" in box:
            raise ValueError("%s rejected: %s" % (base, compat.text(box.pop(base + "/rejected"))))
        left = timeout_ms - compat.ticks_diff(compat.ticks_ms(), t0)
        if left <= 0:
            raise OSError("no answer on %s within %d ms" % (base, timeout_ms))
        ev.clear()
        try:
            await asyncio.wait_for(ev.wait(), left / 1000)
        except asyncio.TimeoutError:
            pass
