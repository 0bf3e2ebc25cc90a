"""'Set up this account for Fleetdesk': fleet indexing, the telemetry table, the rule, the policies.

:func:`plan` looks at the account and says what :func:`apply` would create or change (nothing
when all is in place: setup is idempotent); both take boto3 clients, so the same code runs
against the sandbox and a real account (``iam`` only on AWS, for the role the rule writes with).

AWS cost drivers, in one sentence (:data:`COST_NOTE`): fleet indexing is billed per thing
indexed and per update and per query, the rule per message it processes plus the DynamoDB
write per reading, and DynamoDB storage (kept short by the table's TTL).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

TABLE = "fleetdesk-telemetry"
RULE = "fleetdesk_telemetry"
ROLE = "fleetdesk-telemetry-rule"
TTL_ATTRIBUTE = "expires"
RETENTION_DAYS = 30
# The sandbox has no IAM: any role ARN is accepted there.
SANDBOX_ROLE_ARN = "arn:aws:iam::000000000000:role/" + ROLE
RULE_SQL = (f"SELECT temperature, humidity, seq, ts AS device_ts, topic(2) AS thing, timestamp() AS ts, "
            f"timestamp() / 1000 + {RETENTION_DAYS * 86400} AS {TTL_ATTRIBUTE} FROM 'dt/+/env'")
INDEXING: dict[str, Any] = {
    "thingIndexingMode": "REGISTRY_AND_SHADOW",
    "thingConnectivityIndexingMode": "STATUS",
    "customFields": [
        {"name": "shadow.reported.temperature", "type": "Number"},
        {"name": "shadow.reported.humidity", "type": "Number"},
        {"name": "shadow.reported.firmware_version", "type": "String"},
    ],
}
COST_NOTE = ("On AWS this costs: fleet indexing per thing indexed, per index update and per query; "
             "the rule per message it processes plus one DynamoDB write per reading; DynamoDB storage "
             f"(readings expire after {RETENTION_DAYS} days).")


@dataclass
class Step:
    """One thing setup makes sure of. ``action`` is "create", "update" or "ok" (already there)."""

    what: str
    action: str
    detail: str = ""

    def line(self) -> str:
        mark = {"create": "will create", "update": "will update", "ok": "in place"}[self.action]
        return f"{mark:12} {self.what}" + (f" ({self.detail})" if self.detail else "")


@dataclass
class Plan:
    steps: list[Step] = field(default_factory=list)

    @property
    def needed(self) -> bool:
        return any(s.action != "ok" for s in self.steps)

    def text(self) -> str:
        return "\n".join(s.line() for s in self.steps)


def _code(exc: Exception) -> str:
    return getattr(exc, "response", {}).get("Error", {}).get("Code", "")


def _indexing_ok(current: dict) -> bool:
    if current.get("thingIndexingMode") != INDEXING["thingIndexingMode"]:
        return False
    if current.get("thingConnectivityIndexingMode") != "STATUS":
        return False
    have = {(f["name"], f["type"]) for f in current.get("customFields") or []}
    return all((f["name"], f["type"]) in have for f in INDEXING["customFields"])


def _merged_indexing(current: dict) -> dict:
    """Our indexing needs on top of what the account already indexes (never narrows it)."""
    cfg = {k: v for k, v in current.items() if k != "managedFields"}
    cfg["thingIndexingMode"] = "REGISTRY_AND_SHADOW"
    cfg["thingConnectivityIndexingMode"] = "STATUS"
    fields = {f["name"]: f for f in current.get("customFields") or []}
    for f in INDEXING["customFields"]:
        fields.setdefault(f["name"], f)
    cfg["customFields"] = list(fields.values())
    return cfg


def plan(iot: Any, dynamodb: Any, iam: Any = None) -> Plan:
    """What setup would do on this account (reads only)."""
    from fleetdesk.cloud.identity import DEFAULT_POLICY_NAME

    p = Plan()
    current = iot.get_indexing_configuration().get("thingIndexingConfiguration") or {}
    p.steps.append(Step("fleet indexing (registry, shadow, connectivity; temperature/humidity/firmware fields)",
                        "ok" if _indexing_ok(current) else
                        ("create" if current.get("thingIndexingMode", "OFF") == "OFF" else "update")))
    try:
        dynamodb.describe_table(TableName=TABLE)
        ttl = dynamodb.describe_time_to_live(TableName=TABLE)["TimeToLiveDescription"]
        p.steps.append(Step(f"DynamoDB table {TABLE} (thing + ts)", "ok"))
        p.steps.append(Step(f"TTL on {TABLE}.{TTL_ATTRIBUTE}",
                            "ok" if ttl.get("TimeToLiveStatus") in ("ENABLED", "ENABLING") else "update"))
    except Exception as exc:  # botocore ClientError
        if _code(exc) != "ResourceNotFoundException":
            raise
        p.steps.append(Step(f"DynamoDB table {TABLE} (thing + ts, on-demand)", "create"))
        p.steps.append(Step(f"TTL on {TABLE}.{TTL_ATTRIBUTE} ({RETENTION_DAYS} days)", "create"))
    if iam is not None:
        _resource_step(p, f"IAM role {ROLE} (the rule's dynamodb:PutItem on {TABLE})",
                       lambda: iam.get_role(RoleName=ROLE), ("NoSuchEntity",))
    _resource_step(p, f"rule {RULE}: dt/+/env -> {TABLE}", lambda: iot.get_topic_rule(ruleName=RULE)["rule"],
                   ("UnauthorizedException", "ResourceNotFoundException"),
                   lambda rule: "ok" if rule.get("sql") == RULE_SQL and not rule.get("ruleDisabled") else "update")
    _resource_step(p, f"device policy {DEFAULT_POLICY_NAME}",
                   lambda: iot.get_policy(policyName=DEFAULT_POLICY_NAME), ("ResourceNotFoundException",))
    return p


def _resource_step(p: Plan, what: str, read: Any, missing: tuple[str, ...], state: Any = None) -> None:
    """One step for a resource setup makes: ``read()`` fetches it and ``state(found)`` says "ok" (the
    default) or "update"; an error whose code is in ``missing`` means it is not there ("create");
    any other error is raised."""
    try:
        found = read()
        action = state(found) if state is not None else "ok"
    except Exception as exc:  # botocore ClientError
        if _code(exc) not in missing:
            raise
        action = "create"
    p.steps.append(Step(what, action))


def _role_arn(iam: Any, account_table_arn: str) -> str:
    trust = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "iot.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
    try:
        arn = iam.get_role(RoleName=ROLE)["Role"]["Arn"]
    except Exception as exc:
        if _code(exc) != "NoSuchEntity":
            raise
        arn = iam.create_role(RoleName=ROLE, AssumeRolePolicyDocument=json.dumps(trust),
                              Description="Fleetdesk: the telemetry rule writes readings to DynamoDB")["Role"]["Arn"]
    iam.put_role_policy(RoleName=ROLE, PolicyName="put-telemetry", PolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "dynamodb:PutItem", "Resource": account_table_arn}]}))
    return arn


def apply(iot: Any, dynamodb: Any, iam: Any = None, *, indexing: bool = True) -> Plan:
    """Make the account ready (creates only what :func:`plan` says is missing). Returns the plan it ran.

    ``indexing=False`` leaves fleet indexing as it is (the Fleet page then follows every thing
    directly, as suits a small fleet)."""
    from fleetdesk.cloud.identity import ensure_policy

    todo = plan(iot, dynamodb, iam)
    current = iot.get_indexing_configuration().get("thingIndexingConfiguration") or {}
    if indexing and not _indexing_ok(current):
        iot.update_indexing_configuration(thingIndexingConfiguration=_merged_indexing(current))
    try:
        table = dynamodb.describe_table(TableName=TABLE)["Table"]
    except Exception as exc:
        if _code(exc) != "ResourceNotFoundException":
            raise
        table = dynamodb.create_table(
            TableName=TABLE, BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "thing", "KeyType": "HASH"}, {"AttributeName": "ts", "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": "thing", "AttributeType": "S"},
                                  {"AttributeName": "ts", "AttributeType": "N"}])["TableDescription"]
        dynamodb.get_waiter("table_exists").wait(TableName=TABLE, WaiterConfig={"Delay": 2, "MaxAttempts": 60})
    ttl = dynamodb.describe_time_to_live(TableName=TABLE)["TimeToLiveDescription"]
    if ttl.get("TimeToLiveStatus") not in ("ENABLED", "ENABLING"):
        dynamodb.update_time_to_live(TableName=TABLE, TimeToLiveSpecification={"Enabled": True,
                                                                                "AttributeName": TTL_ATTRIBUTE})
    role = _role_arn(iam, table["TableArn"]) if iam is not None else SANDBOX_ROLE_ARN
    payload = {"sql": RULE_SQL, "awsIotSqlVersion": "2016-03-23", "ruleDisabled": False,
               "description": "Fleetdesk: every dt/<thing>/env reading into " + TABLE,
               "actions": [{"dynamoDBv2": {"roleArn": role, "putItem": {"tableName": TABLE}}}]}
    rule_step = next(s for s in todo.steps if s.what.startswith("rule "))
    if rule_step.action == "create":
        iot.create_topic_rule(ruleName=RULE, topicRulePayload=payload)
    elif rule_step.action == "update":
        iot.replace_topic_rule(ruleName=RULE, topicRulePayload=payload)
    ensure_policy(iot)
    return todo
