"""One BLE field-setup run, as the CLI and the BLE Setup page drive it.

``cloud_target()`` turns the active profile (sandbox or AWS) plus a thing name into
everything the board needs (the backend's device endpoint, port, CA, a fresh cert+key for
the thing);
``provision()`` runs connect -> PoP -> Wi-Fi -> cloud -> certificates -> commit, reporting
each step, and refuses early (before any radio traffic) when cert and key do not match.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from bleak.backends.client import BaseBleakClient
from bleak.backends.device import BLEDevice

from fleetdesk.ble import certs
from fleetdesk.ble.client import Progress, ProvisioningClient, ProvisioningError
from fleetdesk.cloud.backend import DeviceEndpoint, NotOnline, PresenceUnavailable, get_cloud_backend
from fleetdesk.errors import BleError

STEPS = ("connect", "wifi", "cloud", "ca", "cert", "key", "commit")
StepCallback = Callable[[str, str], None]  # (step, detail)


@dataclass
class BoardSetup:
    """What BLE setup writes into a board: the cloud's device endpoint (from the profile's
    backend, the same one flashing writes) plus the thing and its certificate and key (DER;
    keep ``key_der`` secret)."""

    device: DeviceEndpoint
    thing_name: str
    cert_der: bytes
    key_der: bytes = field(repr=False)

    @property
    def endpoint(self) -> str:
        return self.device.host

    @property
    def port(self) -> int:
        return self.device.port

    @property
    def region(self) -> str | None:
        return self.device.region

    @property
    def ca_der(self) -> bytes:
        return certs.cert_der(self.device.ca_pem)

    def __repr__(self) -> str:  # never print the key
        return f"BoardSetup({self.endpoint}:{self.port}, thing={self.thing_name!r})"


def cloud_target(profile: Any, thing_name: str, *, create: bool, ca_file: Path | None = None) -> BoardSetup:
    """Build the setup from a profile: its backend's device endpoint, and a new cert/key for the
    thing (blocking: boto3).

    Args:
        profile: a fleetdesk.config.Profile (sandbox or aws).
        thing_name: the thing to provision as.
        create: create the thing if missing (else it must exist).
        ca_file: CA to install instead of the backend's (the sandbox CA, or Amazon Root CA 1).

    Raises:
        BleError: the thing does not exist (and create is False) or the CA is missing.
        CloudError: the control plane refused a step.
    """
    from botocore.exceptions import ClientError

    from fleetdesk.cloud.identity import create_device_identity

    backend = get_cloud_backend(profile)
    iot = backend.client("iot")
    device = backend.device_endpoint(iot)
    if ca_file is not None:
        if not ca_file.exists():
            raise BleError(f"CA certificate {ca_file} not found", "Pass --ca with the broker's root CA (PEM).")
        device = dataclasses.replace(device, ca_pem=ca_file.read_bytes())
    if not create:
        try:
            iot.describe_thing(thingName=thing_name)
        except ClientError as exc:
            raise BleError(f"thing {thing_name} does not exist in profile {profile.name}",
                           "Create it (--create-thing) or pick an existing thing.") from exc
    ident = create_device_identity(iot, thing_name, attributes={"provisioned_by": "ble"})
    return BoardSetup(device, thing_name, certs.cert_der(ident.certificate_pem.encode()),
                      certs.key_der(ident.private_key_pem.encode()))


async def provision(device: BLEDevice | str, pop: str, wifi_ssid: str, wifi_password: str, target: BoardSetup, *,
                    backend: type[BaseBleakClient] | None = None, on_step: StepCallback | None = None,
                    progress: Progress | None = None, client: ProvisioningClient | None = None,
                    wifi_joined: bool = False, **client_kwargs: Any) -> dict[str, Any]:
    """Run the whole field setup; returns the commit reply.

    ``client``: an already connected session (a page that ran Connect as its own step);
    ``wifi_joined``: that session's board joined ``wifi_ssid`` already (Wi-Fi was a step too),
    so the setup goes on from the cloud settings. ``on_step(step, detail)`` gets "connect",
    "wifi", "cloud", "ca", "cert", "key" and "commit" as each begins.

    Raises:
        BleError: with advice; ProvisioningError carries the device's error code.
    """
    step = on_step or (lambda s, d: None)
    reason = certs.check_pair(target.cert_der, target.key_der)
    if reason:
        raise BleError(f"not sending: {reason}", "Create a new certificate for the thing and retry.")
    prov = client or ProvisioningClient(device, pop, backend=backend, progress=progress, **client_kwargs)
    try:
        step("connect", "connecting and checking the proof-of-possession")
        info = await prov.connect() if prov.client is None else prov.info
        step("connect", f"connected to {info.get('name')}")
        if not wifi_joined:
            step("wifi", f"joining {wifi_ssid}")
            wifi = await prov.set_wifi(wifi_ssid, wifi_password)
            if not wifi.get("connected"):
                raise ProvisioningError(f"the board could not join {wifi_ssid}: {wifi.get('reason')}",
                                        "Check the SSID and password (the board tried them just now).", code="wifi")
        step("cloud", f"{target.endpoint}:{target.port} as {target.thing_name}")
        await prov.set_cloud(target.endpoint, target.port, target.thing_name, target.region)
        for name, data in (("ca", target.ca_der), ("cert", target.cert_der), ("key", target.key_der)):
            step(name, f"{len(data)} bytes")
            await prov.send_file(name, data)
        step("commit", "checking and saving on the board")
        return await prov.commit()
    finally:
        if client is None:
            await prov.close()


def wait_online(profile: Any, thing_name: str, timeout: float = 60.0, poll: float = 0.5) -> dict[str, Any]:
    """Block until the thing is online (the backend's presence check; the shadow alone where
    presence cannot be read) and has reported its shadow (blocking: boto3).

    Returns:
        The reported shadow state.

    Raises:
        BleError: it did not show up within ``timeout`` seconds.
    """
    import json
    import time

    backend = get_cloud_backend(profile)
    deadline = time.monotonic() + timeout
    advice = "Check the Wi-Fi the board joined can reach the endpoint; the board's console tells why."
    try:
        backend.wait_online(thing_name, timeout, poll=poll)
    except PresenceUnavailable:
        pass  # the reported shadow below is then the only sign
    except NotOnline as exc:
        raise BleError(f"{thing_name} did not come online within {timeout:.0f} s", advice) from exc
    data = backend.client("iot-data")
    while True:  # online; its first report follows the connection
        try:
            doc = json.loads(data.get_thing_shadow(thingName=thing_name)["payload"].read())
            reported = doc.get("state", {}).get("reported") or {}
            if reported:
                return reported
        except data.exceptions.ResourceNotFoundException:
            pass
        if time.monotonic() > deadline:
            raise BleError(f"{thing_name} came online but reported no shadow within {timeout:.0f} s", advice)
        time.sleep(poll)
