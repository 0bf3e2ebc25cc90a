"""Claim-certificate mode of the flash station: boards provision themselves by claim at first boot.

Instead of minting a thing + certificate per board, the station writes one shared *claim*
certificate (allowed only the fleet-provisioning topics of one template) into every board's
vfs partition. At first boot the firmware (firmware/fd/provision.py) connects with it, asks
for its own key + certificate (CreateKeysAndCertificate over MQTT), registers with the
template (RegisterThing) and reconnects as the thing the template named.

The claim certificate is minted once per station, profile and template (`ClaimStore`), kept
in the app data dir (key 0600) and reused for every board, so flashing needs no cloud call
and works with the control plane unreachable. After the write the pipeline waits for the
provisioned thing to come online (cloud presence, or the board's console when the control
plane cannot be reached) and records the certificate the board got during provisioning.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from fleetdesk.errors import CloudError
from fleetdesk.paths import RESOURCES_DIR, data_dir, write_private

CLAIM_CERT_PATH = "/certs/claim-cert.der"
CLAIM_KEY_PATH = "/certs/claim-key.der"
CA_PATH = "/certs/ca.der"
VALIDATE_EVERY_S = 300.0  # how long a check of the stored claim cert against the cloud holds
_PROVISIONED_RE = re.compile(r"provisioned by claim as (\S+)")
_CLAIM_FAILED_RE = re.compile(r"provisioning by claim failed: (.*?)(?:; retry in \d+ ms)?$")
_CREATE_CALLS = ("create_keys_and_certificate", "create_certificate_from_csr")


class ClaimUnavailable(CloudError):
    """The station has no claim certificate and cannot make one (cloud unreachable or refused)."""


@dataclass
class ClaimCredentials:
    """The station's claim certificate and where boards use it. ``private_key_pem`` is secret.

    Attributes:
        template: the fleet-provisioning template boards name when claiming.
        certificate_id: the claim certificate's id (64 hex).
        certificate_pem: the claim certificate.
        private_key_pem: its private key (kept 0600, never logged or journaled).
        policy: the claim policy attached to it (scoped to the template's topics).
        endpoint, port, region, ca_pem: the device endpoint the claim was made for.
        template_body: the template as the cloud returned it (to predict thing names offline).
        profile: the profile name it belongs to.
    """

    template: str
    certificate_id: str
    certificate_pem: str
    private_key_pem: str = field(repr=False)
    policy: str = ""
    endpoint: str = ""
    port: int = 8883
    region: str = ""
    ca_pem: str = ""
    template_body: str = ""
    profile: str = ""
    created: float = 0.0

    def meta(self) -> dict:
        """Everything but the private key (what goes into claim.json)."""
        d = asdict(self)
        d.pop("private_key_pem")
        return d


def claim_policy_name(template: str) -> str:
    """``fleetdesk-claim`` for the default template (as `setup_claim` names it), else per template."""
    from fleetdesk.cloud.templates import CLAIM_POLICY, DEFAULT_TEMPLATE

    return CLAIM_POLICY if template == DEFAULT_TEMPLATE else f"{CLAIM_POLICY}-{template}"


def template_of(settings) -> str:
    """The template a station's boards claim with (``claim_template`` or the default)."""
    from fleetdesk.cloud.templates import DEFAULT_TEMPLATE

    return (getattr(settings, "claim_template", "") or DEFAULT_TEMPLATE).strip()


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text) or "_"


class ClaimStore:
    """One claim certificate on disk: ``<data>/claim/<profile>/<template>/``.

    Files: ``claim.cert.pem``, ``claim.private.pem.key`` (0600) and ``claim.json`` (metadata,
    no key material).

    Args:
        profile: profile name (``sandbox`` for the local sandbox).
        template: provisioning template name.
        root: base dir (default: the app data dir's ``claim``).
    """

    _lock = threading.Lock()
    _checked: dict[str, tuple[float, str]] = {}  # folder -> (monotonic time, certificate id) checked online

    def __init__(self, profile: str, template: str, root: Path | None = None) -> None:
        self.profile, self.template = profile or "sandbox", template
        self.folder = (root or data_dir() / "claim") / _slug(self.profile) / _slug(template)

    @classmethod
    def for_station(cls, settings, cloud=None) -> "ClaimStore":
        name = getattr(getattr(settings, "profile", None), "name", None) or getattr(cloud, "name", None) or "sandbox"
        return cls(name, template_of(settings))

    @property
    def key_path(self) -> Path:
        return self.folder / "claim.private.pem.key"

    def load(self) -> ClaimCredentials | None:
        """The stored claim credentials, or None when there are none (or they are incomplete)."""
        try:
            meta = json.loads((self.folder / "claim.json").read_text())
            key = self.key_path.read_text()
            cert = (self.folder / "claim.cert.pem").read_text()
        except (OSError, ValueError):
            return None
        meta.pop("certificate_pem", None)
        known = {k: meta[k] for k in ClaimCredentials.__dataclass_fields__ if k in meta}
        return ClaimCredentials(**{**known, "certificate_pem": cert, "private_key_pem": key})

    def save(self, creds: ClaimCredentials) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        write_private(self.key_path, creds.private_key_pem.encode())
        (self.folder / "claim.cert.pem").write_text(creds.certificate_pem)
        meta = creds.meta()
        meta.pop("certificate_pem")
        tmp = self.folder / "claim.json.tmp"
        tmp.write_text(json.dumps(meta, indent=1))
        tmp.replace(self.folder / "claim.json")

    def ensure(self, cloud, offline_reason: str = "") -> ClaimCredentials:
        """The claim credentials to flash: the stored ones, checked against ``cloud`` when it
        answers (at most every few minutes), else a new claim certificate minted there.

        With the cloud unreachable the stored credentials are used as they are (offline).

        Args:
            cloud: a CloudTarget, or None when there is none (offline).
            offline_reason: why there is no cloud (shown when nothing is stored).

        Raises:
            ClaimUnavailable: nothing stored and the cloud is unreachable or refused.
        """
        with self._lock:
            stored = self.load()
            key = str(self.folder)
            seen = self._checked.get(key)
            if stored is not None and seen and seen[1] == stored.certificate_id \
                    and time.monotonic() - seen[0] < VALIDATE_EVERY_S:
                return stored
            if cloud is None or getattr(cloud, "iot", None) is None:
                if stored is not None:
                    return stored
                why = f" ({offline_reason})" if offline_reason else ""
                raise ClaimUnavailable(
                    f"no claim certificate on this station for template {self.template!r} "
                    f"(profile {self.profile!r}) and no cloud to create one{why}",
                    "connect the station to the cloud once so it can create its claim certificate, "
                    "then it flashes offline; nothing was flashed")
            if stored is not None and _same_endpoint(stored, cloud):
                try:
                    active = _check_active(stored, cloud)
                    if active:
                        self.save(stored)  # the template body may have changed
                except Exception:  # noqa: BLE001 - offline, or not allowed to look: use what we have
                    active = True
                if active:
                    self._checked[key] = (time.monotonic(), stored.certificate_id)
                    return stored
            try:
                creds = mint_claim(cloud, self.template, profile=self.profile)
            except ClaimUnavailable:
                raise
            except Exception as exc:  # network or refusal
                if stored is not None and _unreachable(exc):
                    return stored  # offline: the claim made earlier is still the best we have
                what = "did not answer" if _unreachable(exc) else "refused"
                raise ClaimUnavailable(
                    f"no claim certificate on this station for template {self.template!r} and the cloud "
                    f"{what} while creating one ({_short(exc)})",
                    "check the network and the profile (on AWS the template must exist, with a "
                    "provisioning role); nothing was flashed") from exc
            self.save(creds)
            self._checked[key] = (time.monotonic(), creds.certificate_id)
            return creds


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]


def _unreachable(exc: Exception) -> bool:
    """A network failure (no answer), as opposed to a refusal by the cloud."""
    from botocore.exceptions import ClientError

    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        return status >= 500
    return True


def _same_endpoint(stored: ClaimCredentials, cloud) -> bool:
    """The stored claim cert was made for this device endpoint and CA."""
    return (stored.endpoint, int(stored.port), stored.ca_pem.strip()) == \
        (cloud.endpoint, int(cloud.port), cloud.ca_pem.decode().strip())


def _check_active(stored: ClaimCredentials, cloud) -> bool:
    """The stored claim cert is still ACTIVE in the cloud (refreshes its template body)."""
    from botocore.exceptions import ClientError

    try:
        desc = cloud.iot.describe_certificate(certificateId=stored.certificate_id)["certificateDescription"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            return False
        raise
    if desc.get("status") != "ACTIVE":
        return False
    stored.template_body = _template_body(cloud, stored.template) or stored.template_body
    return True


def _template_body(cloud, template: str) -> str | None:
    from botocore.exceptions import ClientError

    try:
        return cloud.iot.describe_provisioning_template(templateName=template).get("templateBody")
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            return None
        raise


def mint_claim(cloud, template: str, *, profile: str = "") -> ClaimCredentials:
    """Make the claim certificate for ``template`` with ``cloud``'s control plane.

    Creates the claim policy (only the provisioning topics of this template) when missing;
    on the sandbox also the default template and the thing policy it names. On AWS the
    template must exist (it needs a provisioning role).

    Raises:
        ClaimUnavailable: the template does not exist (AWS).
        botocore errors: the cloud did not answer or refused.
    """
    from botocore.exceptions import ClientError

    from fleetdesk.cloud.templates import DEFAULT_TEMPLATE, THING_POLICY

    iot = cloud.iot

    def ensure_policy(name: str, text: str) -> None:
        try:
            iot.create_policy(policyName=name, policyDocument=text)
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ResourceAlreadyExistsException":
                raise

    body = _template_body(cloud, template)
    if body is None:
        role = cloud.provisioning_role_arn
        if role is None:
            raise ClaimUnavailable(f"the provisioning template {template!r} does not exist in {cloud.name}",
                                   "create it in AWS IoT (fleet provisioning, with a provisioning role) "
                                   "or pick an existing template; nothing was flashed")
        ensure_policy(THING_POLICY, _policy_text("thing-policy.json"))
        body = json.dumps(json.loads((RESOURCES_DIR / "provisioning" / f"{DEFAULT_TEMPLATE}.json").read_text()))
        try:  # with the shipped pre-provisioning hook: a claim never takes over an existing board's thing
            iot.create_provisioning_template(templateName=template, templateBody=body, enabled=True,
                                             provisioningRoleArn=role, preProvisioningHook=hook_target(iot))
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ResourceAlreadyExistsException":
                raise
    policy = claim_policy_name(template)
    ensure_policy(policy, _policy_text("claim-policy.json").replace(
        f"provisioning-templates/{DEFAULT_TEMPLATE}/", f"provisioning-templates/{template}/"))
    cert = iot.create_keys_and_certificate(setAsActive=True)
    try:
        iot.attach_policy(policyName=policy, target=cert["certificateArn"])
    except Exception:
        try:  # never leave an ACTIVE certificate nobody keeps
            cloud.deactivate(cert["certificateId"])
        except Exception:  # noqa: BLE001
            pass
        raise
    return ClaimCredentials(template=template, certificate_id=cert["certificateId"],
                            certificate_pem=cert["certificatePem"], private_key_pem=cert["keyPair"]["PrivateKey"],
                            policy=policy, endpoint=cloud.endpoint, port=int(cloud.port), region=cloud.region,
                            ca_pem=cloud.ca_pem.decode(), template_body=body, profile=profile, created=time.time())


HOOK_FUNCTION = "fleetdesk-pre-provisioning-hook"  # the Lambda of README's AWS setup (the sandbox runs it itself)
ISSUED_SERIALS_TABLE = "fleetdesk-issued-serials"  # the serials the hook lets claim (resources/provisioning/)
PENDING_SERIALS = "issued-serials-pending.json"


def hook_target(iot) -> dict:
    """The ``preProvisioningHook`` of the shipped claim template: the shipped hook's Lambda
    (resources/provisioning/pre_provisioning_hook.py) in this account and region."""
    from fleetdesk.cloud.templates import THING_POLICY

    account = iot.get_policy(policyName=THING_POLICY)["policyArn"].split(":")[4]
    return {"targetArn": f"arn:aws:lambda:{iot.meta.region_name}:{account}:function:{HOOK_FUNCTION}",
            "payloadVersion": "2020-04-01"}


def issue_serial(cloud, store: "ClaimStore", serial: str) -> list[str]:
    """Put ``serial`` (and any the station could not put before) into the hook's issued-serials
    table, so the board may claim it and no other serial can; one the cloud cannot take now
    is kept in the claim folder and put at the next board. Without the table (not set up in
    this account) the hook does not check serials and nothing is kept. Returns the serials
    still waiting."""
    path = store.folder / PENDING_SERIALS
    try:
        waiting = json.loads(path.read_text())
    except (OSError, ValueError):
        waiting = []
    todo = sorted(set(waiting) | ({serial} if serial else set()))
    backend = getattr(cloud, "backend", None)
    left = list(todo)
    if backend is not None and todo:
        try:
            ddb = backend.client("dynamodb")
            for s in todo:
                ddb.put_item(TableName=ISSUED_SERIALS_TABLE, Item={"serial": {"S": s}})
                left.remove(s)
        except Exception as exc:  # noqa: BLE001 - unreachable: kept for the next board
            if type(exc).__name__ == "ResourceNotFoundException" or "ResourceNotFound" in str(exc):
                left = []  # no table: the hook checks no serials
    store.folder.mkdir(parents=True, exist_ok=True)
    if left:
        path.write_text(json.dumps(left))
    elif path.exists():
        path.unlink()
    return left


def _policy_text(file: str) -> str:
    return json.dumps(json.loads((RESOURCES_DIR / "policies" / file).read_text()))


def firmware_parameters(mac: str) -> dict[str, str]:
    """The RegisterThing parameters the firmware sends (firmware/fd/provision.py)."""
    mac_hex = (mac or "").replace(":", "").lower()
    return {"SerialNumber": mac_hex, "MacAddress": mac_hex}


def predict_thing_name(template_body: str | None, mac: str) -> str | None:
    """The thing name the template will give a board with this MAC, or None when it depends
    on something only known at provisioning time (then it is read from the board's console)."""
    from fleetdesk.cloud.templates import TemplateError, evaluate

    try:
        doc = json.loads(template_body or "")
        values = {name: spec["Default"] for name, spec in (doc.get("Parameters") or {}).items()
                  if isinstance(spec, dict) and "Default" in spec}
        values.update(firmware_parameters(mac))
        for res in (doc.get("Resources") or {}).values():
            if isinstance(res, dict) and res.get("Type") == "AWS::IoT::Thing":
                name = evaluate((res.get("Properties") or {}).get("ThingName"), values)
                return name if isinstance(name, str) and name else None
    except (TemplateError, ValueError, TypeError, KeyError, IndexError, AttributeError):
        return None
    return None


def claim_device_files(creds: ClaimCredentials, *, pop: str, product: str | None = None,
                       wifi: dict | None = None) -> dict[str, bytes]:
    """The vfs files for claim mode: /config.json (no thing name: the template gives it),
    the CA and the claim certificate + key (DER), as firmware/fd/settings.py reads them."""
    from fleetdesk.boards.identity import _pem_to_der, with_station_fields

    config = {
        "endpoint": creds.endpoint,
        "port": int(creds.port),
        "region": creds.region,
        "ca": CA_PATH,
        "claim": {"cert": CLAIM_CERT_PATH, "key": CLAIM_KEY_PATH, "template": creds.template},
        "pop": pop,
    }
    with_station_fields(config, product, wifi)
    return {
        "/config.json": json.dumps(config, indent=1).encode(),
        CA_PATH: _pem_to_der(creds.ca_pem),
        CLAIM_CERT_PATH: _pem_to_der(creds.certificate_pem),
        CLAIM_KEY_PATH: _pem_to_der(creds.private_key_pem),
    }


def prepare_claim(ctx, info: dict, thing: str):
    """Identity step in claim mode: the plan with the claim certificate in the vfs image.

    No per-board cloud call: the station's claim credentials come from `ClaimStore` (checked
    against the cloud at most every few minutes when it answers). ``ctx.result.thing``
    is set to the name the template will give the board (None when it cannot be predicted);
    ``thing`` (the station's own name for the board) is not used by the template.

    Returns:
        FlashPlan: the bundle with /config.json and /certs/* for claim mode.
    """
    store = ClaimStore.for_station(ctx.settings, ctx.cloud)
    creds = store.ensure(ctx.cloud)
    mac = info.get("mac") or ""
    waiting = issue_serial(ctx.cloud, store, firmware_parameters(mac)["SerialNumber"] if mac else "")
    if waiting:
        ctx.journal("identity", "note", {"issued_serials_waiting": len(waiting),
                                         "why": "the cloud did not take them yet; put at the next board"})
    predicted = predict_thing_name(creds.template_body, mac)
    ctx.result.thing, ctx.result.certificate_id = predicted, None
    ctx.claim = creds
    pop = secrets.token_hex(16)
    ctx.claim_pop = pop
    if predicted:
        write_private(data_dir() / "devices" / predicted / "pop.txt", pop.encode())
    ctx.journal("identity", "done", {"claim": True, "template": creds.template, "thing": predicted,
                                           "claim_certificate_id": creds.certificate_id},
                      **({"thing": predicted} if predicted else {}))
    files = claim_device_files(creds, pop=pop, product=ctx.settings.product, wifi=ctx.settings.wifi)
    plan = ctx.plan.with_vfs_files(files)
    # the board's own identity (read by the probe) was backed up by the pipeline before this
    ctx.journal("write", "begin", {"bundle_sha256": ctx.plan.sha256, "bytes": plan.total_bytes})
    return plan


def wait_claim_online(ctx, flashed_at: float, console) -> None:
    """Wait until the board, provisioned by claim, is online as its thing.

    The thing name is the predicted one, or the one the board prints (``provisioned by claim
    as <thing>``). Online = cloud presence (GetThingConnectivityData) when the control plane
    answers, else the board's own ``online as <thing>`` console line. Then the certificate
    the board got during provisioning is looked up (ListThingPrincipals) for the record.

    On a timeout or a cancel, certificates the board claimed during this flash are set
    INACTIVE (never left ACTIVE for a failed board); the board's own report of a failed
    claim (``provisioning by claim failed: ...``) goes into the error.

    Raises:
        StageFailed: timeout or cancel.
    """
    from fleetdesk.boards.errors import StageFailed as _Failed
    from fleetdesk.cloud.backend import PresenceUnavailable

    r, settings = ctx.result, ctx.settings
    deadline = time.monotonic() + settings.online_timeout
    use_cloud = ctx.cloud is not None and getattr(ctx.cloud, "iot", None) is not None
    why_console = "" if use_cloud else "no control plane"
    claim_error = ""
    if use_cloud and r.thing:
        _retire_before_claim(ctx, r.thing, flashed_at)
    while time.monotonic() < deadline:
        if ctx.cancel.is_set():
            _rollback_claimed(ctx, flashed_at, use_cloud)
            raise _Failed("online", "cancelled by the operator", "cancelled")
        lines = list(console.lines) if console is not None else []
        for line in lines:
            m = _PROVISIONED_RE.search(line)
            if m and m.group(1) != r.thing:
                ctx.journal("identity", "claimed", {"thing": m.group(1), "predicted": r.thing})
                r.thing = m.group(1)
            m = _CLAIM_FAILED_RE.search(line)
            if m:
                claim_error = m.group(1)
        if r.thing:
            if use_cloud:
                try:
                    if ctx.cloud.is_online(r.thing, since=flashed_at)[0]:
                        r.presence = "cloud presence (GetThingConnectivityData)"
                        break
                except PresenceUnavailable as exc:
                    use_cloud, why_console = False, exc.message
                except Exception as exc:  # noqa: BLE001 - transient, or no control plane at all
                    if _unreachable(exc) and not _is_not_found(exc):
                        use_cloud, why_console = False, f"control plane unreachable: {_short(exc)}"
            if not use_cloud and any(f"online as {r.thing}" in line for line in lines):
                r.presence = f"boot seen on the console (cloud presence unavailable: {why_console})"
                ctx.journal("online", "fallback", r.presence)
                break
        ctx.cancel.wait(0.5)
    else:
        what = r.thing or "the board"
        detail = f"; the board reports: provisioning by claim failed: {claim_error}" if claim_error else ""
        if _rollback_claimed(ctx, flashed_at, use_cloud):
            detail += "; the certificate it claimed was set INACTIVE"
        raise _Failed("online", f"{what} did not come online after provisioning by claim within "
                                f"{settings.online_timeout:.0f} s (template {ctx.claim.template}){detail}",
                      "not-online")
    if r.thing and ctx.claim_pop:
        write_private(data_dir() / "devices" / r.thing / "pop.txt", ctx.claim_pop.encode())
    retired = []
    if use_cloud:
        certs = claimed_certificates(ctx.cloud, r.thing, ctx.claim.certificate_id)
        r.certificate_id = certs[0][1] if certs else None
        for made, cert_id in certs[1:]:  # the board's earlier identities: their keys were just overwritten
            if made < flashed_at - 2:
                try:
                    ctx.cloud.deactivate(cert_id)
                    retired.append(cert_id)
                except Exception as exc:  # noqa: BLE001 - journaled; the board uses its new one
                    ctx.journal("retire", "failed", {"certificate_id": cert_id, "error": _short(exc)})
    ctx.journal("identity", "provisioned", {"thing": r.thing, "certificate_id": r.certificate_id,
                                                   "presence": r.presence, "retired": retired})


def _retire_before_claim(ctx, thing: str, flashed_at: float) -> None:
    """A re-flash in claim mode: the board's earlier certificates of ``thing`` are set INACTIVE
    now that the claim bundle is written over them, so the pre-provisioning hook lets this
    board claim its thing again (it refuses a thing that still has an ACTIVE certificate:
    that is what keeps another holder of the claim certificate from taking it over). The
    firmware retries a refused claim, so one that comes first is only a retry late. A
    certificate created since ``flashed_at`` is the one the board just claimed: kept."""
    claim_id = ctx.claim.certificate_id if getattr(ctx, "claim", None) is not None else ""
    try:
        principals = ctx.cloud.iot.list_thing_principals(thingName=thing).get("principals", [])
    except Exception:  # noqa: BLE001 - a new board (no thing yet), or no answer: nothing to retire
        return
    for arn in principals:
        cid = arn.rsplit("/", 1)[-1]
        if ":cert/" not in arn or cid == claim_id:
            continue
        try:
            desc = ctx.cloud.iot.describe_certificate(certificateId=cid)["certificateDescription"]
            created = desc.get("creationDate")
            if desc["status"] == "ACTIVE" and (created is None or created.timestamp() < flashed_at - 1.0):
                ctx.cloud.deactivate(cid)
                ctx.journal("retire", "done", {"certificate_id": cid, "status": "INACTIVE", "why": "re-claim"})
        except Exception as exc:  # noqa: BLE001 - the hook then refuses the claim, and the error says why
            ctx.journal("retire", "failed", str(exc))


def _rollback_claimed(ctx, flashed_at: float, use_cloud: bool) -> list[str]:
    """A board that claimed a certificate but never came online: set the certificates this
    flash made INACTIVE (never left ACTIVE for a failed board; a re-flash claims a new one)."""
    thing = ctx.result.thing
    if not (use_cloud and thing):
        return []
    done = []
    for made, cert_id in claimed_certificates(ctx.cloud, thing, ctx.claim.certificate_id):
        if made >= flashed_at - 2:
            try:
                ctx.cloud.deactivate(cert_id)
                done.append(cert_id)
            except Exception as exc:  # noqa: BLE001 - journaled
                ctx.journal("rollback", "failed", {"certificate_id": cert_id, "error": _short(exc)})
    if done:
        ctx.journal("rollback", "done", {"thing": thing, "claimed_certificates": done, "status": "INACTIVE"})
    return done


def _is_not_found(exc: Exception) -> bool:
    from botocore.exceptions import ClientError

    return isinstance(exc, ClientError) and exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException"


def claimed_certificates(cloud, thing: str, claim_certificate_id: str = "") -> list[tuple[float, str]]:
    """The ACTIVE certificates of a thing provisioned by claim, newest first, as (creation
    time, id); the claim certificate is left out. The first is the one the board got during
    provisioning. Empty when the control plane cannot tell."""
    try:
        out = []
        for arn in cloud.iot.list_thing_principals(thingName=thing).get("principals", []):
            cert_id = arn.rsplit("/", 1)[-1]
            if cert_id == claim_certificate_id or ":cert/" not in arn:
                continue
            desc = cloud.iot.describe_certificate(certificateId=cert_id)["certificateDescription"]
            if desc.get("status") != "ACTIVE":
                continue
            made = desc.get("creationDate")
            out.append((made.timestamp() if hasattr(made, "timestamp") else float(made or 0), cert_id))
        return sorted(out, reverse=True)
    except Exception:  # noqa: BLE001 - the board is online; the record just lacks the id
        return []
