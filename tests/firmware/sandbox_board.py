"""A virtual ESP32 running the firmware against the sandbox, with its own thing and
certificate made through boto3 (what a user does), for the firmware's end-to-end tests."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from helpers_sandbox import der


@contextmanager
def sandbox_board(sandbox, tmp_path, *, prefix: str, mac: str, refresh_ms: int) -> Iterator[dict]:
    """Yields {thing, iot, data, handle, out (the console bytes), fs, arn}; the board stops after."""
    import boto3
    from devfs import make_device_fs

    from fleetdesk.cloud.identity import create_device_identity
    from fleetdesk.virtual.runtime import launch_firmware

    kw = sandbox.boto3_kwargs()
    iot, data = boto3.client("iot", **kw), boto3.client("iot-data", **kw)
    thing = f"{prefix}-{tmp_path.name[-12:].replace('_', '-')}"
    ident = create_device_identity(iot, thing)
    with open(sandbox.ca_file) as f:
        ca = der(f.read())
    fs = make_device_fs(tmp_path / "fs", thing=thing, endpoint=sandbox.mqtt_host, port=sandbox.mqtt_port,
                        ca_der=ca, cert_der=der(ident.certificate_pem),
                        key_der=der(ident.private_key_pem, key=True), settings={"refresh": refresh_ms})
    out = bytearray()
    h = launch_firmware(fs, mac=mac, chip="esp32", console=out.extend)
    try:
        yield {"thing": thing, "iot": iot, "data": data, "handle": h, "out": out, "fs": fs,
               "arn": iot.describe_thing(thingName=thing)["thingArn"]}
    finally:
        h.stop()
