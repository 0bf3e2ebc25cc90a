"""Registered CA certificates (a customer's own CA, e.g. a factory line's), as AWS IoT keeps
them: RegisterCACertificate with the verification-certificate proof of key possession,
GetRegistrationCode, DescribeCACertificate, UpdateCACertificate, ListCACertificates,
DeleteCACertificate; status ACTIVE/INACTIVE, auto-registration ENABLE/DISABLE and the
just-in-time provisioning template (``registrationConfig``) per CA.

Kept as JSON in ``<state_dir>/ca-registry.json`` (0600). Hand-written: it is the emulator side.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import secrets
import time
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from fleetdesk.paths import write_private
from fleetdesk.sandbox.awserror import AwsError, not_found

FILE = "ca-registry.json"
MAX_CAS = 10  # AWS: up to 10 CA certificates with the same subject per account/region (we count all)


def _validation(message: str) -> AwsError:
    return AwsError("CertificateValidationException", message, 400)


def _load(pem: str, what: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem.encode())
    except (ValueError, TypeError) as exc:
        raise _validation(f"The {what} is not a valid PEM certificate") from exc


def der_id(cert: x509.Certificate) -> str:
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
        return True
    except (ValueError, TypeError, InvalidSignature):
        return False


class CaRegistry:
    """The registered CAs of the sandbox account."""

    def __init__(self, state_dir: Path, region: str, account_id: str) -> None:
        self.path = Path(state_dir) / FILE
        self.region, self.account_id = region, account_id

    def _read(self) -> dict:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {"registrationCode": "", "cas": {}}

    def _write(self, doc: dict) -> None:
        write_private(self.path, json.dumps(doc, indent=1).encode())

    def arn(self, ca_id: str) -> str:
        return f"arn:aws:iot:{self.region}:{self.account_id}:cacert/{ca_id}"

    def registration_code(self) -> str:
        """The account's registration code (the same every time, as on AWS)."""
        doc = self._read()
        if not doc.get("registrationCode"):
            doc["registrationCode"] = secrets.token_hex(32)
            self._write(doc)
        return doc["registrationCode"]

    def register(self, ca_pem: str, verification_pem: str | None, *, set_active: bool, allow_auto: bool,
                 registration_config: dict | None, mode: str = "DEFAULT") -> dict:
        ca = _load(ca_pem, "CA certificate")
        try:
            is_ca = ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        except x509.ExtensionNotFound:
            is_ca = False
        if not is_ca:
            raise _validation("The certificate is not a CA certificate (basicConstraints CA:TRUE is missing)")
        if mode == "DEFAULT":
            if not verification_pem:
                raise AwsError("InvalidRequestException",
                               "verificationCertificate is required when certificateMode is DEFAULT")
            ver = _load(verification_pem, "verification certificate")
            cns = [a.value for a in ver.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)]
            if cns != [self.registration_code()]:
                raise AwsError("RegistrationCodeValidationException",
                               "The verification certificate's common name is not this account's registration code",
                               400)
            if not signed_by(ver, ca):
                raise _validation("The verification certificate is not signed by the CA certificate's private key")
        elif mode != "SNI_ONLY":
            raise AwsError("InvalidRequestException", f"certificateMode must be DEFAULT or SNI_ONLY, not {mode!r}")
        now = _dt.datetime.now(_dt.timezone.utc)
        if ca.not_valid_after_utc < now:
            raise AwsError("CertificateValidationException", "The CA certificate has expired", 400)
        ca_id = der_id(ca)
        doc = self._read()
        if ca_id in doc["cas"]:
            raise AwsError("ResourceAlreadyExistsException", f"The CA certificate {ca_id} is already registered", 409)
        if len(doc["cas"]) >= MAX_CAS:
            raise AwsError("LimitExceededException", f"At most {MAX_CAS} CA certificates can be registered", 410)
        t = time.time()
        doc["cas"][ca_id] = {
            "certificateId": ca_id, "certificatePem": ca_pem, "status": "ACTIVE" if set_active else "INACTIVE",
            "autoRegistrationStatus": "ENABLE" if allow_auto else "DISABLE", "certificateMode": mode,
            "registrationConfig": _config(registration_config), "creationDate": t, "lastModifiedDate": t,
            "customerVersion": 1, "notBefore": ca.not_valid_before_utc.timestamp(),
            "notAfter": ca.not_valid_after_utc.timestamp(),
        }
        self._write(doc)
        return {"certificateArn": self.arn(ca_id), "certificateId": ca_id}

    def _get(self, ca_id: str) -> dict:
        ca = self._read()["cas"].get(ca_id)
        if ca is None:
            raise not_found(f"The CA certificate {ca_id} does not exist")
        return ca

    def describe(self, ca_id: str) -> dict:
        ca = self._get(ca_id)
        desc = {"certificateArn": self.arn(ca_id), "certificateId": ca_id, "status": ca["status"],
                "certificatePem": ca["certificatePem"], "ownedBy": self.account_id,
                "creationDate": ca["creationDate"], "autoRegistrationStatus": ca["autoRegistrationStatus"],
                "lastModifiedDate": ca["lastModifiedDate"], "customerVersion": ca["customerVersion"],
                "generationId": str(int(ca["lastModifiedDate"] * 1000)), "certificateMode": ca["certificateMode"],
                "validity": {"notBefore": ca["notBefore"], "notAfter": ca["notAfter"]}}
        out = {"certificateDescription": desc}
        if ca["registrationConfig"]:
            out["registrationConfig"] = ca["registrationConfig"]
        return out

    def update(self, ca_id: str, *, status: str | None, auto: str | None, registration_config: dict | None,
               remove_auto: bool) -> None:
        doc = self._read()
        ca = doc["cas"].get(ca_id)
        if ca is None:
            raise not_found(f"The CA certificate {ca_id} does not exist")
        if status is not None:
            if status not in ("ACTIVE", "INACTIVE"):
                raise AwsError("InvalidRequestException", f"newStatus must be ACTIVE or INACTIVE, not {status!r}")
            ca["status"] = status
        if auto is not None:
            if auto not in ("ENABLE", "DISABLE"):
                raise AwsError("InvalidRequestException",
                               f"newAutoRegistrationStatus must be ENABLE or DISABLE, not {auto!r}")
            ca["autoRegistrationStatus"] = auto
        if remove_auto:
            ca["registrationConfig"] = {}
        elif registration_config is not None:
            ca["registrationConfig"] = _config(registration_config)
        ca["lastModifiedDate"] = time.time()
        ca["customerVersion"] += 1
        self._write(doc)

    def list(self) -> list[dict]:
        return [{"certificateArn": self.arn(i), "certificateId": i, "status": c["status"],
                 "creationDate": c["creationDate"]} for i, c in sorted(self._read()["cas"].items(),
                                                                       key=lambda kv: kv[1]["creationDate"])]

    def delete(self, ca_id: str) -> None:
        doc = self._read()
        ca = doc["cas"].get(ca_id)
        if ca is None:
            raise not_found(f"The CA certificate {ca_id} does not exist")
        if ca["status"] == "ACTIVE":
            raise AwsError("CertificateStateException", "The CA certificate must be INACTIVE before it is deleted", 406)
        del doc["cas"][ca_id]
        self._write(doc)

    def issuer_of(self, cert: x509.Certificate) -> dict | None:
        """The registered CA that signed ``cert`` (any status), or None."""
        for ca in self._read()["cas"].values():
            if signed_by(cert, x509.load_pem_x509_certificate(ca["certificatePem"].encode())):
                return ca
        return None


def _config(cfg: dict | None) -> dict:
    """A registrationConfig (templateBody, roleArn, templateName); the template must parse."""
    if not cfg:
        return {}
    out = {k: cfg[k] for k in ("templateBody", "roleArn", "templateName") if cfg.get(k)}
    if "templateBody" in out:
        from fleetdesk.sandbox.provisioning import validate_template_body

        try:
            validate_template_body(out["templateBody"])
        except ValueError as exc:
            raise AwsError("InvalidRequestException", f"registrationConfig.templateBody is invalid: {exc}") from exc
    return out
