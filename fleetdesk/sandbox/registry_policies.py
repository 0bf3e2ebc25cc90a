"""Policies and their versions (the registry's ``policies``: :class:`fleetdesk.sandbox.registry.Registry` has one).

AWS keeps up to 5 versions per policy; one is the default (the one that is enforced).
"""

from __future__ import annotations

import time

from fleetdesk.sandbox import strict_json
from fleetdesk.sandbox.awserror import AwsError, already_exists, conflict, not_found
from fleetdesk.sandbox.registry_db import RegistryDb

MAX_POLICY_CHARS = 2048  # AWS IoT quota: policy document size, white space excluded


POLICIES_SCHEMA = """
CREATE TABLE IF NOT EXISTS policies (
    name TEXT PRIMARY KEY, default_version INTEGER NOT NULL, next_version INTEGER NOT NULL,
    created REAL NOT NULL, modified REAL NOT NULL);
CREATE TABLE IF NOT EXISTS policy_versions (
    name TEXT NOT NULL, version INTEGER NOT NULL, document TEXT NOT NULL, created REAL NOT NULL,
    PRIMARY KEY (name, version));
"""


class PolicyStore:
    """The policies of a registry: ``Registry.policies`` (same database; attachments stay in the registry)."""

    def __init__(self, tables: RegistryDb) -> None:
        self._t = tables
        self.db = tables.db

    @staticmethod
    def _check_document(document: str) -> None:
        size = len("".join(str(document).split()))
        if size > MAX_POLICY_CHARS:
            raise AwsError("MalformedPolicyException",
                           f"The policy document is {size} characters long (white space excluded); "
                           f"AWS IoT allows {MAX_POLICY_CHARS}")
        try:
            doc = strict_json.loads(document)
        except (TypeError, ValueError) as exc:
            raise AwsError("MalformedPolicyException", f"The policy document is not valid JSON: {exc}") from exc
        statements = doc.get("Statement") if isinstance(doc, dict) else None
        if isinstance(statements, dict):
            statements = [statements]
        if not isinstance(statements, list) or not statements:
            raise AwsError("MalformedPolicyException", "The policy document needs a Statement list")
        for st in statements:
            if not isinstance(st, dict) or st.get("Effect") not in ("Allow", "Deny") or "Action" not in st \
                    or "Resource" not in st:
                raise AwsError("MalformedPolicyException",
                               "Each policy statement needs Effect (Allow|Deny), Action and Resource")

    def default_document(self, name: str) -> str:
        """The text of policy ``name``'s default version (ResourceNotFoundException if there is none)."""
        return self._t.row("SELECT v.document FROM policies p JOIN policy_versions v "
                           "ON v.name=p.name AND v.version=p.default_version WHERE p.name=?", name,
                           missing=f"Policy {name} cannot be found.")[0]

    def create_policy(self, name: str, document: str) -> dict:
        self._check_document(document)
        if self._t.one("SELECT 1 FROM policies WHERE name=?", name):
            raise already_exists(f"Policy {name} already exists")
        now = time.time()
        with self.db:
            self.db.execute("INSERT INTO policies VALUES (?,?,?,?,?)", (name, 1, 2, now, now))
            self.db.execute("INSERT INTO policy_versions VALUES (?,?,?,?)", (name, 1, document, now))
        return {"policyName": name, "policyArn": self._t.arn("policy", name), "policyDocument": document,
                "policyVersionId": "1"}

    def create_policy_version(self, name: str, document: str, set_as_default: bool = False) -> dict:
        self._check_document(document)
        row = self._t.one("SELECT next_version FROM policies WHERE name=?", name)
        if row is None:
            raise not_found(f"Policy {name} cannot be found.")
        if self._t.one("SELECT COUNT(*) FROM policy_versions WHERE name=?", name)[0] >= 5:
            raise AwsError("VersionsLimitExceededException", f"Policy {name} already has 5 versions", 409)
        version, now = row[0], time.time()
        with self.db:
            self.db.execute("INSERT INTO policy_versions VALUES (?,?,?,?)", (name, version, document, now))
            self.db.execute("UPDATE policies SET next_version=?, modified=?" + (", default_version=?" if set_as_default else "")
                            + " WHERE name=?", (version + 1, now, *((version,) if set_as_default else ()), name))
        return {"policyArn": self._t.arn("policy", name), "policyDocument": document,
                "policyVersionId": str(version), "isDefaultVersion": bool(set_as_default)}

    def get_policy(self, name: str) -> dict:
        document = self.default_document(name)
        default, created, modified = self._t.one(
            "SELECT default_version, created, modified FROM policies WHERE name=?", name)
        return {"policyName": name, "policyArn": self._t.arn("policy", name), "policyDocument": document,
                "defaultVersionId": str(default), "creationDate": created, "lastModifiedDate": modified,
                "generationId": str(int(modified * 1000))}

    def list_policies(self, ascending: bool = True) -> list[dict]:
        """Every policy, by name (the API handler pages them)."""
        order = "ASC" if ascending is not False else "DESC"
        names = [r[0] for r in self.db.execute(f"SELECT name FROM policies ORDER BY name {order}")]
        return [{"policyName": n, "policyArn": self._t.arn("policy", n)} for n in names]

    def delete_policy(self, name: str) -> None:
        self.default_document(name)
        if self._t.one("SELECT 1 FROM policy_targets WHERE policy=?", name):
            raise conflict(f"Policy {name} is attached to one or more targets; detach it first")
        with self.db:
            self.db.execute("DELETE FROM policy_versions WHERE name=?", (name,))
            self.db.execute("DELETE FROM policies WHERE name=?", (name,))

    def list_policy_versions(self, name: str) -> list[dict]:
        self.default_document(name)
        default = self._t.one("SELECT default_version FROM policies WHERE name=?", name)[0]
        return [{"versionId": str(v), "isDefaultVersion": v == default, "createDate": c}
                for v, c in self.db.execute("SELECT version, created FROM policy_versions WHERE name=? "
                                            "ORDER BY version DESC", (name,))]

    def _version_row(self, name: str, version: str):
        try:
            number = int(version)
        except ValueError:
            number = -1
        return self._t.row("SELECT version, document, created FROM policy_versions WHERE name=? AND version=?",
                           name, number, missing=f"Policy {name} has no version {version}")

    def get_policy_version(self, name: str, version: str) -> dict:
        self.default_document(name)
        number, document, created = self._version_row(name, version)
        default, modified = self._t.one("SELECT default_version, modified FROM policies WHERE name=?", name)
        return {"policyArn": self._t.arn("policy", name), "policyName": name, "policyDocument": document,
                "policyVersionId": str(number), "isDefaultVersion": number == default, "creationDate": created,
                "lastModifiedDate": modified, "generationId": str(int(modified * 1000))}

    def set_default_policy_version(self, name: str, version: str) -> None:
        self.default_document(name)
        number = self._version_row(name, version)[0]
        self.db.execute("UPDATE policies SET default_version=?, modified=? WHERE name=?", (number, time.time(), name))

    def delete_policy_version(self, name: str, version: str) -> None:
        self.default_document(name)
        number = self._version_row(name, version)[0]
        if self._t.one("SELECT default_version FROM policies WHERE name=?", name)[0] == number:
            raise conflict(f"Version {version} is the default version of policy {name}; set another default first")
        self.db.execute("DELETE FROM policy_versions WHERE name=? AND version=?", (name, number))
