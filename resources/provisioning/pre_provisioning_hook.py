"""Pre-provisioning hook for the ``fleetdesk-claim`` template: a claim certificate cannot hijack a device.

Deploy on AWS as a Lambda (Python 3.11+, handler ``pre_provisioning_hook.lambda_handler``) and
name it in the template's ``preProvisioningHook.targetArn``; its role needs
``iot:ListThingPrincipals``, ``iot:DescribeCertificate`` and ``dynamodb:GetItem`` on the
issued-serials table. The sandbox runs :func:`decide` itself (same code, registry lookups)
for every template that names a hook. AWS calls the hook with the RegisterThing request
(``parameters``, ``certificateId``, ``claimCertificateId``...) and provisions only if it answers
``{"allowProvisioning": true}``.

Refused:

* a ``SerialNumber`` that is missing or not a plain name (it becomes part of the thing name);
* a serial the station did not issue, when the issued-serials table
  (:data:`ISSUED_TABLE`, partition key ``serial`` (S)) exists: the station puts each serial
  it flashes a claim bundle for into it;
* a thing (``esp-<serial>``) that already has an ACTIVE certificate: re-registering it would
  hand the claimer that device's deltas and jobs. Deactivate the old certificate first (the
  station's New identity does) to re-provision a board on purpose.
"""

from __future__ import annotations

import re
from typing import Callable

ISSUED_TABLE = "fleetdesk-issued-serials"
THING_PREFIX = "esp-"
SERIAL_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")


def decide(event: dict, *, active_certificates: Callable[[str], list[str]],
           serial_issued: Callable[[str], bool | None]) -> dict:
    """The hook's answer for one RegisterThing request.

    Args:
        event: what AWS passes the Lambda (``parameters``, ``certificateId``...).
        active_certificates: the ACTIVE certificate ids attached to a thing ([] if none or no thing).
        serial_issued: True/False for a serial, or None when no issued-serials table exists.

    Returns:
        ``{"allowProvisioning": bool}`` (plus ``"reason"`` when refused, for logs).
    """
    params = event.get("parameters") or {}
    serial = str(params.get("SerialNumber") or "")
    if not SERIAL_RE.fullmatch(serial):
        return {"allowProvisioning": False, "reason": f"SerialNumber {serial[:40]!r} is missing or not a plain name"}
    if serial_issued(serial) is False:
        return {"allowProvisioning": False, "reason": f"serial {serial} was not issued by a Fleetdesk station"}
    thing = THING_PREFIX + serial
    others = [c for c in active_certificates(thing) if c != event.get("certificateId")]
    if others:
        return {"allowProvisioning": False,
                "reason": f"{thing} already has an ACTIVE certificate ({others[0][:12]}...); deactivate it to "
                          "re-provision this board"}
    return {"allowProvisioning": True}


def lambda_handler(event, context):  # pragma: no cover - runs on AWS Lambda
    import boto3
    from botocore.exceptions import ClientError

    iot, ddb = boto3.client("iot"), boto3.client("dynamodb")

    def active_certificates(thing: str) -> list[str]:
        try:
            principals = iot.list_thing_principals(thingName=thing)["principals"]
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ResourceNotFoundException":
                return []
            raise
        out = []
        for arn in principals:
            if ":cert/" in arn:
                cid = arn.rsplit("/", 1)[1]
                if iot.describe_certificate(certificateId=cid)["certificateDescription"]["status"] == "ACTIVE":
                    out.append(cid)
        return out

    def serial_issued(serial: str) -> bool | None:
        try:
            return "Item" in ddb.get_item(TableName=ISSUED_TABLE, Key={"serial": {"S": serial}})
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ResourceNotFoundException":
                return None
            raise

    answer = decide(event, active_certificates=active_certificates, serial_issued=serial_issued)
    if not answer["allowProvisioning"]:
        print(f"refused: {answer['reason']}")
    return {"allowProvisioning": answer["allowProvisioning"]}
