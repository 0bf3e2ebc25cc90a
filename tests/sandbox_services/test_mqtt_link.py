"""The services' MQTT link: a clear error when the broker cannot be reached."""

from __future__ import annotations

import socket
from types import SimpleNamespace

import pytest

from fleetdesk.errors import SandboxError
from fleetdesk.sandbox.mqtt_link import MqttLink


async def test_unreachable_broker_is_a_sandbox_error():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    link = MqttLink(SimpleNamespace(host="127.0.0.1", port=port, username="u", password="p"), "shadow", [],
                    lambda t, p: None)
    with pytest.raises(SandboxError, match="internal listener"):
        await link.start(timeout=1.0)
    await link.stop()
