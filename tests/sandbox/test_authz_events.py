"""Authorizer without a broker: which connection lines become ClientEvents (presence's source)."""

from __future__ import annotations

import asyncio
import json

from fleetdesk.paths import RESOURCES_DIR
from fleetdesk.sandbox.authz import Authorizer
from fleetdesk.sandbox.broker import parse_log_line
from fleetdesk.sandbox.ca import SandboxCA
from fleetdesk.sandbox.context import InternalMqtt, SandboxContext
from fleetdesk.sandbox.registry import Registry


def _ctx(tmp_path) -> SandboxContext:
    ca = SandboxCA.load_or_create(tmp_path / "ca")
    reg = Registry(tmp_path / "reg.sqlite", "us-east-1", "123456789012")
    return SandboxContext(state_dir=tmp_path, region="us-east-1", account_id="123456789012", registry=reg, ca=ca,
                          mqtt_host="127.0.0.1", mqtt_port=1, ws_port=2,
                          internal_mqtt=InternalMqtt("127.0.0.1", 9, "fleetdesk-internal", "pw"),
                          https_port=3, port_base=0, credentials={})


def _device(ctx, thing: str) -> str:
    issued, _, _ = ctx.ca.create_keys_and_certificate()
    reg = ctx.registry
    reg.add_certificate(issued.certificate_id, issued.certificate_pem, issued.common_name, issued.serial, "ACTIVE")
    reg.create_thing(thing)
    if "p" not in [p["policyName"] for p in reg.policies.list_policies()]:
        reg.policies.create_policy("p", (RESOURCES_DIR / "policies" / "thing-policy.json").read_text())
    reg.attach_policy("p", reg.arn("cert", issued.certificate_id))
    reg.attach_thing_principal(thing, reg.arn("cert", issued.certificate_id))
    return issued.common_name


def test_connection_lines_to_client_events(tmp_path):
    ctx = _ctx(tmp_path)
    cn = _device(ctx, "dev1")
    authz = Authorizer(ctx)
    events = ctx.events.queue()

    async def run():
        async def line(text):
            await authz.on_connection(parse_log_line(text))

        await line(f"New client connected from 127.0.0.1:5000 as dev1 (p5, c1, k60, u'{cn}').")
        await line("New client connected from 127.0.0.1:5001 as fd-svc-shadow-1 (p2, c1, k30, u'fleetdesk-internal').")
        await line(f"New client connected from 127.0.0.1:5002 as impostor (p5, c1, k60, u'{cn}').")
        await line("Client impostor closed its connection.")
        await line("Client fd-svc-shadow-1 disconnected.")
        await line("Client dev1 already connected, closing old connection.")
        await line(f"New client connected from 127.0.0.1:5003 as dev1 (p5, c1, k60, u'{cn}').")
        await authz.before_broker_start(tmp_path / "dynsec.json")  # the broker died
        await asyncio.gather(*authz._tasks, return_exceptions=True)  # the (failing) kick of "impostor"

    asyncio.run(run())
    got = []
    while not events.empty():
        e = events.get_nowait()
        got.append((e.kind, e.client_id, e.reason, e.thing_name))
    assert got == [
        ("connected", "dev1", "", "dev1"),
        ("disconnected", "dev1", "DUPLICATE_CLIENTID", "dev1"),
        ("connected", "dev1", "", "dev1"),
        ("disconnected", "dev1", "SERVER_ERROR", "dev1"),
    ]
    doc = json.loads((tmp_path / "dynsec.json").read_text())
    assert {c["username"] for c in doc["clients"]} == {"fleetdesk-internal", "fleetdesk-admin", "fleetdesk-app", cn}
    assert [c.get("clientid") for c in doc["clients"] if c["username"] == cn] == ["dev1"]
