"""Fleet provisioning by claim (seed 001's mode), host side: claim cert in, device identity out.

With a claim certificate (allowed only the provisioning topics) the caller gets a new
certificate — made from a CSR whose private key never leaves this machine, or made by the
service (CreateKeysAndCertificate) — then registers the thing with a provisioning template
(RegisterThing). This is the same MQTT exchange awsiotsdk's IotIdentityClientV2 performs,
so it works against AWS IoT and the sandbox alike.

Example::

    ident = await provision_by_claim(settings_with_claim_cert, "fleetdesk-claim",
                                     {"SerialNumber": "A1B2", "MacAddress": "24:0a:c4:00:00:01"})
    ident.thing_name, ident.certificate_pem, ident.private_key_pem
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass, field, replace

from fleetdesk.cloud.connection import Connection, Message
from fleetdesk.cloud.errors import RequestTimeout
from fleetdesk.cloud.settings import ConnectionSettings
from fleetdesk.errors import CloudError


class ProvisioningError(CloudError):
    """The provisioning service refused a step.

    Attributes:
        status: statusCode of the rejection (400, 403, 500...).
        code: errorCode (e.g. ``InvalidParameters``, ``InvalidCertificateOwnershipToken``).
    """

    def __init__(self, message: str, advice: str | None = None, status: int = 0, code: str = "") -> None:
        super().__init__(message, advice)
        self.status = status
        self.code = code


@dataclass
class ProvisionedIdentity:
    """What a device needs after provisioning. ``private_key_pem`` is secret (write 0600).

    Attributes:
        thing_name: the thing the template created.
        certificate_id: 64 hex chars.
        certificate_pem: the device certificate.
        private_key_pem: its private key.
        device_configuration: the template's ``DeviceConfiguration`` (may be empty).
    """

    thing_name: str
    certificate_id: str
    certificate_pem: str
    private_key_pem: str = field(repr=False)
    device_configuration: dict = field(default_factory=dict)


def make_key_and_csr(common_name: str = "fleetdesk-device") -> tuple[str, str]:
    """A new EC P-256 private key (PEM) and a CSR for it (PEM)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
           .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    return key_pem, csr.public_bytes(serialization.Encoding.PEM).decode()


class _Exchange:
    """One request/reply on an AWS ``.../json`` topic pair."""

    def __init__(self, conn: Connection, timeout: float) -> None:
        self.conn = conn
        self.timeout = timeout
        self._futures: dict[str, asyncio.Future] = {}

    def _on_reply(self, msg: Message) -> None:
        base, _, outcome = msg.topic.rpartition("/")
        fut = self._futures.get(base)
        if fut is None or fut.done():
            return
        try:
            doc = json.loads(msg.payload)
        except ValueError:
            doc = {"errorMessage": "unparsable reply"}
        fut.set_result((outcome, doc if isinstance(doc, dict) else {}))

    async def call(self, topic: str, body: dict, what: str) -> dict:
        fut = asyncio.get_running_loop().create_future()
        self._futures[topic] = fut
        removers = [await self.conn.subscribe(f"{topic}/{o}", self._on_reply, qos=1) for o in ("accepted", "rejected")]
        try:
            await self.conn.publish(topic, body, qos=1)
            try:
                outcome, doc = await asyncio.wait_for(fut, self.timeout)
            except asyncio.TimeoutError as exc:
                raise RequestTimeout(f"{what}: no reply within {self.timeout:.0f} s",
                                     "is fleet provisioning enabled for this endpoint?") from exc
        finally:
            self._futures.pop(topic, None)
            for remove in removers:
                await remove()
        if outcome != "accepted":
            raise ProvisioningError(
                f"{what} rejected: {doc.get('statusCode', '?')} {doc.get('errorCode', '')} "
                f"{doc.get('errorMessage', '')}".strip(),
                "check the claim certificate's policy, the template name and its parameters",
                status=int(doc.get("statusCode") or 0), code=str(doc.get("errorCode") or ""))
        return doc


async def provision_by_claim(claim: ConnectionSettings, template: str, parameters: dict[str, str], *,
                             use_csr: bool = True, timeout: float = 15.0) -> ProvisionedIdentity:
    """Run the claim flow and return the new device identity.

    Args:
        claim: connection settings with the claim certificate (mTLS). A one-off client id is
            used unless the settings name one.
        template: provisioning template name.
        parameters: template parameters (e.g. SerialNumber, MacAddress).
        use_csr: make the key here and send a CSR (the key never leaves this machine);
            False lets the service generate the key pair.
        timeout: seconds per step.

    Raises:
        ConnectFailed: the claim certificate cannot connect.
        ProvisioningError: a step was rejected (e.g. bad parameters or token).
        RequestTimeout: no answer.
    """
    settings = replace(claim, clean_start=True, client_id=claim.client_id or f"claim-{uuid.uuid4().hex[:12]}")
    conn = Connection(settings)
    await conn.start()
    try:
        await conn.wait_connected(timeout)
        ex = _Exchange(conn, timeout)
        if use_csr:
            key_pem, csr_pem = make_key_and_csr(parameters.get("SerialNumber", "fleetdesk-device"))
            cert = await ex.call("$aws/certificates/create-from-csr/json",
                                 {"certificateSigningRequest": csr_pem}, "CreateCertificateFromCsr")
        else:
            cert = await ex.call("$aws/certificates/create/json", {}, "CreateKeysAndCertificate")
            key_pem = cert.get("privateKey", "")
        reg = await ex.call(f"$aws/provisioning-templates/{template}/provision/json",
                            {"certificateOwnershipToken": cert["certificateOwnershipToken"],
                             "parameters": dict(parameters)}, "RegisterThing")
    finally:
        await conn.stop()
    return ProvisionedIdentity(thing_name=reg.get("thingName", ""), certificate_id=cert["certificateId"],
                               certificate_pem=cert["certificatePem"], private_key_pem=key_pem,
                               device_configuration=reg.get("deviceConfiguration") or {})
