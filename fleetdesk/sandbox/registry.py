"""The sandbox's registry: things, thing groups, certificates, policies and attachments.

SQLite in WAL mode in ``<state_dir>/registry.sqlite``; survives restarts. Methods raise
:class:`~fleetdesk.sandbox.awserror.AwsError` with AWS's codes, so the control plane can
pass them straight to boto3. Used from the sandbox's event-loop thread.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from fleetdesk.sandbox.awserror import AwsError, already_exists, conflict, invalid
from fleetdesk.sandbox.registry_db import RegistryDb
from fleetdesk.sandbox.registry_policies import POLICIES_SCHEMA, PolicyStore
from fleetdesk.sandbox.registry_types import TYPES_SCHEMA, ThingTypeStore

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS things (
    name TEXT PRIMARY KEY, thing_id TEXT NOT NULL, type TEXT, attributes TEXT NOT NULL,
    version INTEGER NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS thing_groups (
    name TEXT PRIMARY KEY, group_id TEXT NOT NULL, parent TEXT, description TEXT,
    attributes TEXT NOT NULL, version INTEGER NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS group_members (
    grp TEXT NOT NULL, thing TEXT NOT NULL, PRIMARY KEY (grp, thing));
CREATE TABLE IF NOT EXISTS certificates (
    id TEXT PRIMARY KEY, pem TEXT NOT NULL, cn TEXT NOT NULL UNIQUE, serial TEXT NOT NULL,
    status TEXT NOT NULL, created REAL NOT NULL, modified REAL NOT NULL,
    not_before REAL, not_after REAL);
CREATE TABLE IF NOT EXISTS policy_targets (
    policy TEXT NOT NULL, target TEXT NOT NULL, PRIMARY KEY (policy, target));
CREATE TABLE IF NOT EXISTS deleted_serials (serial TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS thing_principals (
    thing TEXT NOT NULL, principal TEXT NOT NULL, PRIMARY KEY (thing, principal));
CREATE INDEX IF NOT EXISTS thing_principals_by_principal ON thing_principals (principal);
CREATE INDEX IF NOT EXISTS policy_targets_by_target ON policy_targets (target);
CREATE INDEX IF NOT EXISTS group_members_by_thing ON group_members (thing);
CREATE INDEX IF NOT EXISTS thing_groups_by_parent ON thing_groups (parent);
CREATE INDEX IF NOT EXISTS certificates_by_status ON certificates (status);
"""

CERT_STATUSES = ("ACTIVE", "INACTIVE", "REVOKED", "PENDING_TRANSFER", "REGISTER_INACTIVE", "PENDING_ACTIVATION")


@dataclass(frozen=True)
class CertificateView:
    """What the broker's authorizer needs to know about one certificate."""

    certificate_id: str
    common_name: str
    serial: int
    status: str
    things: tuple[str, ...]
    policy_documents: tuple[dict, ...]


def _page(rows: list, token: str | None, size: int | None, default: int = 100) -> tuple[list, str | None]:
    try:
        start = int(token) if token else 0
    except ValueError as exc:
        raise invalid(f"invalid paging token {token!r}") from exc
    size = size or default
    if size < 1:
        raise invalid("page size must be at least 1")
    chunk = rows[start : start + size]
    nxt = str(start + size) if start + size < len(rows) else None
    return chunk, nxt


NAME_RE = re.compile(r"[a-zA-Z0-9:_-]{1,128}")  # AWS: thing, thing group and thing type names


def check_name(what: str, name) -> None:
    """AWS's name rule for things, groups and types (InvalidRequestException otherwise)."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise AwsError("InvalidRequestException",
                       f"{what} {str(name)[:80]!r} is invalid: use 1-128 of the characters a-z A-Z 0-9 : _ -")


class Registry:
    """The registry database: things, groups, certificates and attachments; its ``policies``
    (:class:`PolicyStore`) and ``thing_types`` (:class:`ThingTypeStore`) share the database.

    Args:
        path: the SQLite file (created if missing).
        region: AWS region used in ARNs.
        account_id: 12-digit account id used in ARNs.
    """

    def __init__(self, path: Path, region: str, account_id: str) -> None:
        self.path = path
        self.region = region
        self.account_id = account_id
        try:
            self.db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA busy_timeout=5000")
            self.db.executescript(_SCHEMA + POLICIES_SCHEMA + TYPES_SCHEMA)
            row = self.db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        except sqlite3.DatabaseError as exc:
            from fleetdesk.errors import SandboxError

            raise SandboxError(
                f"the sandbox registry {path} is not a usable SQLite database ({exc})",
                "restore it from a backup, or start the sandbox with a new --state-dir",
            ) from exc
        if row is None:
            self.db.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
        elif row[0] != str(SCHEMA_VERSION):
            from fleetdesk.errors import SandboxError

            raise SandboxError(
                f"the sandbox registry {path} has schema {row[0]}, this Fleetdesk knows {SCHEMA_VERSION}",
                "use the Fleetdesk version that made it, or a new --state-dir",
            )
        self.tables = RegistryDb(self.db, region, account_id)
        self.policies = PolicyStore(self.tables)
        self.thing_types = ThingTypeStore(self.tables)

    def close(self) -> None:
        self.db.close()

    # -- ARNs --------------------------------------------------------------------------
    def arn(self, kind: str, name: str) -> str:
        """``arn:aws:iot:<region>:<account>:<kind>/<name>``."""
        return self.tables.arn(kind, name)

    def _cert_id_from_arn(self, arn: str) -> str | None:
        prefix = self.arn("cert", "")
        return arn[len(prefix):] if arn.startswith(prefix) else None

    # -- things ------------------------------------------------------------------------
    def _thing_row(self, name: str):
        return self.tables.row("SELECT name, thing_id, type, attributes, version FROM things WHERE name=?", name,
                               missing=f"Thing {name} cannot be found.")

    def _thing_dict(self, row) -> dict:
        name, thing_id, ttype, attrs, version = row
        d = {"thingName": name, "thingId": thing_id, "thingArn": self.arn("thing", name),
             "attributes": json.loads(attrs), "version": version}
        if ttype:
            d["thingTypeName"] = ttype
        return d

    def create_thing(self, name: str, thing_type: str | None = None, attributes: dict | None = None) -> dict:
        check_name("thingName", name)  # also for things fleet provisioning makes from a template
        attributes = {str(k): str(v) for k, v in (attributes or {}).items()}
        if thing_type:
            self.thing_types.check_thing_type(thing_type)
        row = self.tables.one("SELECT name, thing_id, type, attributes, version FROM things WHERE name=?", name)
        if row is not None:
            if row[2] == thing_type and json.loads(row[3]) == attributes:
                return self._thing_dict(row)
            raise already_exists(f"Thing {name} already exists in account with different attributes")
        thing_id = str(uuid.uuid4())
        self.db.execute("INSERT INTO things VALUES (?,?,?,?,?,?)",
                        (name, thing_id, thing_type, json.dumps(attributes), 1, time.time()))
        return self._thing_dict(self._thing_row(name))

    def describe_thing(self, name: str) -> dict:
        d = self._thing_dict(self._thing_row(name))
        d["defaultClientId"] = name
        return d

    def list_things(self, *, attribute_name=None, attribute_value=None, prefix=False, thing_type=None,
                    token=None, max_results=None) -> tuple[list[dict], str | None]:
        rows = self.db.execute("SELECT name, thing_id, type, attributes, version FROM things ORDER BY name").fetchall()
        out = []
        for row in rows:
            d = self._thing_dict(row)
            if thing_type and d.get("thingTypeName") != thing_type:
                continue
            if attribute_name:
                val = d["attributes"].get(attribute_name)
                if val is None:
                    continue
                if attribute_value is not None and not (val.startswith(attribute_value) if prefix else val == attribute_value):
                    continue
            d.pop("thingId")
            out.append(d)
        return _page(out, token, max_results, 50)

    def update_thing(self, name: str, *, thing_type=None, attribute_payload=None, expected_version=None,
                     remove_thing_type=False) -> None:
        _, _, ttype, attrs, version = self._thing_row(name)
        if expected_version is not None and int(expected_version) != version:
            raise AwsError("VersionConflictException",
                           f"The version for thing {name} does not match the expected version.", 409)
        attrs = json.loads(attrs)
        if attribute_payload:
            new = {str(k): str(v) for k, v in (attribute_payload.get("attributes") or {}).items()}
            if attribute_payload.get("merge"):
                attrs.update(new)
                attrs = {k: v for k, v in attrs.items() if v != ""}
            else:
                attrs = {k: v for k, v in new.items() if v != ""}
        if remove_thing_type:
            ttype = None
        elif thing_type:
            self.thing_types.check_thing_type(thing_type)
            ttype = thing_type
        self.db.execute("UPDATE things SET type=?, attributes=?, version=? WHERE name=?",
                        (ttype, json.dumps(attrs), version + 1, name))

    def delete_thing(self, name: str, expected_version=None) -> None:
        row = self.tables.one("SELECT version FROM things WHERE name=?", name)
        if row is None:
            return  # AWS: deleting a missing thing succeeds
        if expected_version is not None and int(expected_version) != row[0]:
            raise AwsError("VersionConflictException",
                           f"The version for thing {name} does not match the expected version.", 409)
        if self.tables.one("SELECT 1 FROM thing_principals WHERE thing=?", name):
            raise invalid(f"Cannot delete thing {name}: it has attached principals; detach them first")
        with self.db:
            self.db.execute("DELETE FROM group_members WHERE thing=?", (name,))
            self.db.execute("DELETE FROM things WHERE name=?", (name,))

    # -- thing groups ------------------------------------------------------------------
    def _group_row(self, name: str):
        return self.tables.row("SELECT name, group_id, parent, description, attributes, version, created "
                               "FROM thing_groups WHERE name=?", name, missing=f"Thing group {name} cannot be found.")

    def group_ancestors(self, name: str) -> list[str]:
        """Parent chain from the root down to the direct parent of ``name``."""
        chain: list[str] = []
        cur = self._group_row(name)[2]
        while cur:
            chain.insert(0, cur)
            cur = self._group_row(cur)[2]
        return chain

    def create_thing_group(self, name: str, parent: str | None = None, properties: dict | None = None) -> dict:
        check_name("thingGroupName", name)
        properties = properties or {}
        if self.tables.one("SELECT 1 FROM thing_groups WHERE name=?", name):
            raise already_exists(f"Thing group {name} already exists")
        if parent:
            self._group_row(parent)
            if len(self.group_ancestors(parent)) >= 6:
                raise invalid("thing groups may be nested at most 7 levels deep")
        attrs = (properties.get("attributePayload") or {}).get("attributes") or {}
        group_id = str(uuid.uuid4())
        self.db.execute("INSERT INTO thing_groups VALUES (?,?,?,?,?,?,?)",
                        (name, group_id, parent, properties.get("thingGroupDescription"),
                         json.dumps(attrs), 1, time.time()))
        return {"thingGroupName": name, "thingGroupArn": self.arn("thinggroup", name), "thingGroupId": group_id}

    def describe_thing_group(self, name: str) -> dict:
        _, group_id, parent, desc, attrs, version, created = self._group_row(name)
        props: dict = {"attributePayload": {"attributes": json.loads(attrs)}}
        if desc:
            props["thingGroupDescription"] = desc
        meta: dict = {"creationDate": created}
        if parent:
            meta["parentGroupName"] = parent
            meta["rootToParentThingGroups"] = [
                {"groupName": g, "groupArn": self.arn("thinggroup", g)} for g in self.group_ancestors(name)
            ]
        return {"thingGroupName": name, "thingGroupId": group_id, "thingGroupArn": self.arn("thinggroup", name),
                "version": version, "thingGroupProperties": props, "thingGroupMetadata": meta}

    def _descendants(self, name: str) -> list[str]:
        out, todo = [], [name]
        while todo:
            kids = [r[0] for r in self.db.execute(
                "SELECT name FROM thing_groups WHERE parent=? ORDER BY name", (todo.pop(0),))]
            out.extend(kids)
            todo.extend(kids)
        return out

    def list_thing_groups(self, *, parent=None, name_prefix=None, recursive=None, token=None,
                          max_results=None) -> tuple[list[dict], str | None]:
        if parent:
            self._group_row(parent)
            names = self._descendants(parent) if recursive is not False else [
                r[0] for r in self.db.execute("SELECT name FROM thing_groups WHERE parent=? ORDER BY name", (parent,))]
        else:
            names = [r[0] for r in self.db.execute(
                "SELECT name FROM thing_groups WHERE parent IS NULL OR ? ORDER BY name", (recursive is not False,))]
        names = [n for n in sorted(names) if not name_prefix or n.startswith(name_prefix)]
        groups = [{"groupName": n, "groupArn": self.arn("thinggroup", n)} for n in names]
        return _page(groups, token, max_results, 50)

    def delete_thing_group(self, name: str) -> None:
        if not self.tables.one("SELECT 1 FROM thing_groups WHERE name=?", name):
            return
        if self.tables.one("SELECT 1 FROM thing_groups WHERE parent=?", name):
            raise invalid(f"Cannot delete thing group {name}: it has child groups")
        with self.db:
            self.db.execute("DELETE FROM group_members WHERE grp=?", (name,))
            self.db.execute("DELETE FROM policy_targets WHERE target=?", (self.arn("thinggroup", name),))
            self.db.execute("DELETE FROM thing_groups WHERE name=?", (name,))

    def _resolve(self, name, arn, kind: str) -> str:
        if not name and arn:
            prefix = self.arn(kind, "")
            if not arn.startswith(prefix):
                raise invalid(f"{arn} is not a {kind} ARN of this account")
            name = arn[len(prefix):]
        if not name:
            raise invalid(f"name the {kind} (by name or ARN)")
        return name

    def _membership(self, group, group_arn, thing, thing_arn) -> tuple[str, str]:
        """(group, thing) named by name or ARN, both existing."""
        group = self._resolve(group, group_arn, "thinggroup")
        thing = self._resolve(thing, thing_arn, "thing")
        self._group_row(group)
        self._thing_row(thing)
        return group, thing

    def add_thing_to_group(self, group=None, group_arn=None, thing=None, thing_arn=None) -> None:
        member = self._membership(group, group_arn, thing, thing_arn)
        self.db.execute("INSERT OR IGNORE INTO group_members VALUES (?,?)", member)

    def remove_thing_from_group(self, group=None, group_arn=None, thing=None, thing_arn=None) -> None:
        member = self._membership(group, group_arn, thing, thing_arn)
        self.db.execute("DELETE FROM group_members WHERE grp=? AND thing=?", member)

    def things_in_group(self, group: str, recursive: bool = False) -> list[str]:
        self._group_row(group)
        groups = [group] + (self._descendants(group) if recursive else [])
        marks = ",".join("?" * len(groups))
        return [r[0] for r in self.db.execute(
            f"SELECT DISTINCT thing FROM group_members WHERE grp IN ({marks}) ORDER BY thing", groups)]

    def direct_groups_of_thing(self, thing: str) -> list[str]:
        """Groups ``thing`` was added to (not their ancestors)."""
        self._thing_row(thing)
        return [r[0] for r in self.db.execute("SELECT grp FROM group_members WHERE thing=? ORDER BY grp", (thing,))]

    def update_thing_group(self, name: str, properties: dict | None, expected_version=None) -> int:
        _, _, _, desc, attrs, version, _ = self._group_row(name)
        if expected_version is not None and int(expected_version) != version:
            raise AwsError("VersionConflictException",
                           f"The version for thing group {name} does not match the expected version.", 409)
        properties = properties or {}
        if "thingGroupDescription" in properties:
            desc = properties["thingGroupDescription"]
        payload = properties.get("attributePayload")
        if payload is not None:
            new = {str(k): str(v) for k, v in (payload.get("attributes") or {}).items()}
            old = json.loads(attrs)
            merged = {**old, **new} if payload.get("merge") else new
            attrs = json.dumps({k: v for k, v in merged.items() if v != ""})
        self.db.execute("UPDATE thing_groups SET description=?, attributes=?, version=? WHERE name=?",
                        (desc, attrs, version + 1, name))
        return version + 1

    def groups_of_thing(self, thing: str) -> list[str]:
        """Direct groups of ``thing`` plus all their ancestors."""
        direct = [r[0] for r in self.db.execute("SELECT grp FROM group_members WHERE thing=?", (thing,))]
        out: list[str] = []
        for g in direct:
            for name in self.group_ancestors(g) + [g]:
                if name not in out:
                    out.append(name)
        return out

    # -- certificates ------------------------------------------------------------------
    def add_certificate(self, cert_id: str, pem: str, cn: str, serial: int, status: str,
                        not_before: float | None = None, not_after: float | None = None) -> None:
        if status not in CERT_STATUSES:
            raise invalid(f"unknown certificate status {status!r}")
        now = time.time()
        self.db.execute("INSERT INTO certificates VALUES (?,?,?,?,?,?,?,?,?)",
                        (cert_id, pem, cn, str(serial), status, now, now, not_before, not_after))

    def _cert_row(self, cert_id: str):
        return self.tables.row("SELECT id, pem, cn, serial, status, created, modified, not_before, not_after "
                               "FROM certificates WHERE id=?", cert_id, missing=f"The certificate {cert_id} does not exist")

    def describe_certificate(self, cert_id: str) -> dict:
        cid, pem, _cn, _serial, status, created, modified, nb, na = self._cert_row(cert_id)
        return {"certificateArn": self.arn("cert", cid), "certificateId": cid, "status": status,
                "certificatePem": pem, "ownedBy": self.account_id, "creationDate": created,
                "lastModifiedDate": modified, "customerVersion": 1, "generationId": str(int(modified * 1000)),
                "validity": {"notBefore": nb, "notAfter": na}, "certificateMode": "DEFAULT"}

    def list_certificates(self, *, marker=None, page_size=None, ascending=False) -> tuple[list[dict], str | None]:
        order = "ASC" if ascending else "DESC"
        rows = self.db.execute(f"SELECT id, status, created FROM certificates ORDER BY created {order}, id").fetchall()
        certs = [{"certificateArn": self.arn("cert", i), "certificateId": i, "status": s,
                  "certificateMode": "DEFAULT", "creationDate": c} for i, s, c in rows]
        return _page(certs, marker, page_size, 25)

    def update_certificate(self, cert_id: str, status: str) -> None:
        row = self._cert_row(cert_id)
        if status not in ("ACTIVE", "INACTIVE", "REVOKED"):
            raise invalid(f"newStatus must be ACTIVE, INACTIVE or REVOKED, not {status!r}")
        if row[4] == "REVOKED" and status != "REVOKED":
            raise AwsError("CertificateStateException", f"Certificate {cert_id} is revoked and cannot be changed", 406)
        self.db.execute("UPDATE certificates SET status=?, modified=? WHERE id=?", (status, time.time(), cert_id))

    def delete_certificate(self, cert_id: str, force: bool = False) -> None:
        status = self._cert_row(cert_id)[4]
        if status == "ACTIVE":
            raise AwsError("CertificateStateException",
                           "Certificate must be deactivated (INACTIVE or REVOKED) before deletion.", 406)
        arn = self.arn("cert", cert_id)
        if self.tables.one("SELECT 1 FROM thing_principals WHERE principal=?", arn):
            raise conflict(f"Certificate {cert_id} is attached to one or more things; detach them first")
        if self.tables.one("SELECT 1 FROM policy_targets WHERE target=?", arn) and not force:
            raise conflict(f"Certificate {cert_id} has attached policies; detach them or use forceDelete")
        with self.db:
            self.db.execute("DELETE FROM policy_targets WHERE target=?", (arn,))
            self.db.execute("INSERT OR IGNORE INTO deleted_serials SELECT serial FROM certificates WHERE id=?", (cert_id,))
            self.db.execute("DELETE FROM certificates WHERE id=?", (cert_id,))

    def certificate_ids(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT id FROM certificates ORDER BY created")]

    def certificate_by_cn(self, cn: str) -> str | None:
        row = self.tables.one("SELECT id FROM certificates WHERE cn=?", cn)
        return row[0] if row else None

    def revoked_serials(self) -> list[int]:
        """Serials of every certificate that may not connect (not ACTIVE, or deleted)."""
        return [int(r[0]) for r in self.db.execute(
            "SELECT serial FROM certificates WHERE status != 'ACTIVE' UNION SELECT serial FROM deleted_serials")]

    def certificate_view(self, cert_id: str) -> CertificateView:
        """Status, things and effective policy documents (own + the things' groups') of a cert."""
        cid, _pem, cn, serial, status, *_ = self._cert_row(cert_id)
        arn = self.arn("cert", cid)
        things = tuple(r[0] for r in self.db.execute(
            "SELECT thing FROM thing_principals WHERE principal=? ORDER BY thing", (arn,)))
        targets = [arn] + [self.arn("thinggroup", g) for t in things for g in self.groups_of_thing(t)]
        docs, seen = [], set()
        for target in targets:
            for (policy,) in self.db.execute("SELECT policy FROM policy_targets WHERE target=? ORDER BY policy", (target,)):
                if policy not in seen:
                    seen.add(policy)
                    docs.append(json.loads(self.policies.default_document(policy)))
        return CertificateView(cid, cn, int(serial), status, things, tuple(docs))

    def _check_target(self, target: str) -> None:
        cert_id = self._cert_id_from_arn(target)
        if cert_id is not None:
            self._cert_row(cert_id)
            return
        group_prefix = self.arn("thinggroup", "")
        if target.startswith(group_prefix):
            self._group_row(target[len(group_prefix):])
            return
        raise invalid(f"{target!r} is not a certificate or thing group ARN of this account")

    def attach_policy(self, name: str, target: str) -> None:
        self.policies.default_document(name)
        self._check_target(target)
        self.db.execute("INSERT OR IGNORE INTO policy_targets VALUES (?,?)", (name, target))

    def detach_policy(self, name: str, target: str) -> None:
        self.policies.default_document(name)
        self._check_target(target)
        self.db.execute("DELETE FROM policy_targets WHERE policy=? AND target=?", (name, target))

    def attached_policies(self, target: str, recursive: bool = False) -> list[dict]:
        self._check_target(target)
        targets = [target]
        group_prefix = self.arn("thinggroup", "")
        if recursive and target.startswith(group_prefix):
            targets += [self.arn("thinggroup", g) for g in self.group_ancestors(target[len(group_prefix):])]
        names: list[str] = []
        for t in targets:
            names += [r[0] for r in self.db.execute("SELECT policy FROM policy_targets WHERE target=? ORDER BY policy", (t,))
                      if r[0] not in names]
        return [{"policyName": n, "policyArn": self.arn("policy", n)} for n in names]

    def policy_targets(self, name: str) -> list[str]:
        self.policies.default_document(name)
        return [r[0] for r in self.db.execute("SELECT target FROM policy_targets WHERE policy=? ORDER BY target", (name,))]

    # -- thing principals --------------------------------------------------------------
    def _check_principal(self, principal: str) -> str:
        cert_id = self._cert_id_from_arn(principal or "")
        if cert_id is None:
            raise invalid(f"principal {principal!r} is not a certificate ARN of this account")
        self._cert_row(cert_id)
        return cert_id

    def attach_thing_principal(self, thing: str, principal: str) -> None:
        self._thing_row(thing)
        self._check_principal(principal)
        self.db.execute("INSERT OR IGNORE INTO thing_principals VALUES (?,?)", (thing, principal))

    def detach_thing_principal(self, thing: str, principal: str) -> None:
        self._thing_row(thing)
        self._check_principal(principal)
        self.db.execute("DELETE FROM thing_principals WHERE thing=? AND principal=?", (thing, principal))

    def thing_principals(self, thing: str) -> list[str]:
        self._thing_row(thing)
        return [r[0] for r in self.db.execute("SELECT principal FROM thing_principals WHERE thing=? ORDER BY principal", (thing,))]

    def principal_things(self, principal: str) -> list[str]:
        self._check_principal(principal)
        return [r[0] for r in self.db.execute("SELECT thing FROM thing_principals WHERE principal=? ORDER BY thing", (principal,))]

    def certificates_of_things(self, things: list[str]) -> list[str]:
        """Certificate ids attached to any of ``things``."""
        out: list[str] = []
        for t in things:
            for (p,) in self.db.execute("SELECT principal FROM thing_principals WHERE thing=?", (t,)):
                cid = self._cert_id_from_arn(p)
                if cid and cid not in out:
                    out.append(cid)
        return out
