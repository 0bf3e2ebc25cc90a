"""The sandbox's AWS IoT rules engine: topic rules kept in ``<state_dir>/rules.json``, run on
every message the broker carries (and on Basic Ingest, ``$aws/rules/<rule>/<topic>``).

Actions run: ``republish`` (topic with substitution templates, qos), ``dynamoDBv2`` (the rule's
output as one item of the sandbox's DynamoDB table, every top-level field an attribute) and
the rule's ``errorAction`` when an action fails (AWS's error payload: ruleName, topic,
clientId, base64OriginalPayload, failures). Other action types are refused at creation with
a message saying so: the sandbox cannot run them. A Basic Ingest message triggers only the rule
it names, whatever its FROM clause, and ``topic()`` does not see the ``$aws/rules/<rule>`` prefix.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fleetdesk.sandbox.awserror import AwsError
from fleetdesk.sandbox.mqtt_wire import topic_matches
from fleetdesk.sandbox.rules_sql import Context, SqlError, parse, run, substitute

if TYPE_CHECKING:
    from fleetdesk.sandbox.mqtt_link import MqttLink

log = logging.getLogger(__name__)

RULE_NAME_RE = re.compile(r"^[a-zA-Z0-9_]{1,128}$")
SUPPORTED_ACTIONS = ("republish", "dynamoDBv2")
FILTERS = ["#", "$aws/rules/#"]


def to_dynamo(value: Any) -> dict:
    """A JSON value as a DynamoDB attribute value."""
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, (int, float)):
        return {"N": repr(value) if isinstance(value, float) else str(value)}
    if isinstance(value, str):
        return {"S": value}
    if value is None:
        return {"NULL": True}
    if isinstance(value, list):
        return {"L": [to_dynamo(v) for v in value]}
    if isinstance(value, dict):
        return {"M": {str(k): to_dynamo(v) for k, v in value.items()}}
    return {"S": str(value)}


def check_payload(payload: dict) -> dict:
    """The validated topicRulePayload (normalised); AwsError as AWS answers."""
    sql = payload.get("sql") or ""
    try:
        parse(sql)
    except SqlError as exc:
        raise AwsError("SqlParseException", f"{exc} in {sql!r}") from exc
    actions = payload.get("actions")
    if not isinstance(actions, list):
        raise AwsError("InvalidRequestException", "topicRulePayload.actions must be a list")
    for action in actions + ([payload["errorAction"]] if payload.get("errorAction") else []):
        check_action(action)
    version = payload.get("awsIotSqlVersion") or "2015-10-08"
    if version not in ("2015-10-08", "2016-03-23", "beta"):
        raise AwsError("InvalidRequestException", f"unknown awsIotSqlVersion {version!r}")
    return {"sql": sql, "description": payload.get("description") or "", "actions": actions,
            "ruleDisabled": bool(payload.get("ruleDisabled")), "awsIotSqlVersion": version,
            **({"errorAction": payload["errorAction"]} if payload.get("errorAction") else {})}


def check_action(action: dict) -> None:
    if not isinstance(action, dict) or len(action) != 1:
        raise AwsError("InvalidRequestException", "each rule action names exactly one action type")
    (kind, spec), = action.items()
    if kind not in SUPPORTED_ACTIONS:
        raise AwsError("InvalidRequestException",
                       f"the sandbox's rules engine cannot run {kind} actions (it runs {', '.join(SUPPORTED_ACTIONS)})")
    if not (spec or {}).get("roleArn", "").startswith("arn:"):
        raise AwsError("InvalidRequestException", f"{kind}: roleArn must be an IAM role ARN")
    if kind == "republish" and not spec.get("topic"):
        raise AwsError("InvalidRequestException", "republish: topic is required")
    if kind == "dynamoDBv2" and not (spec.get("putItem") or {}).get("tableName"):
        raise AwsError("InvalidRequestException", "dynamoDBv2: putItem.tableName is required")


class RulesEngine:
    """Rules, their storage and their execution (``ctx.extras["rules"]``)."""

    def __init__(self, ctx: Any, path: Path) -> None:
        self.ctx = ctx
        self.path = path
        self.link: MqttLink | None = None
        self.rules: dict[str, dict] = {}
        self._compiled: dict[str, Any] = {}
        self.counts = {"matched": 0, "actions_failed": 0}
        self._writes: list = []  # dynamoDBv2 puts of this loop turn: (table, item, on_error)
        if path.exists():
            try:
                self.rules = json.loads(path.read_text())
            except ValueError:
                log.warning("rules: %s is unreadable; starting with no rules", path)
        for name, rule in self.rules.items():
            self._compiled[name] = parse(rule["sql"])

    def _save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.rules, indent=1))
        os.replace(tmp, self.path)

    def arn(self, name: str) -> str:
        return f"arn:aws:iot:{self.ctx.region}:{self.ctx.account_id}:rule/{name}"

    def _rule(self, name: str) -> dict:
        rule = self.rules.get(name)
        if rule is None:  # AWS answers an unknown rule name this way
            raise AwsError("UnauthorizedException", f"Rule {name} does not exist or you are not authorized", 401)
        return rule

    # -- API ---------------------------------------------------------------------------
    def create(self, name: str, payload: dict) -> None:
        if not RULE_NAME_RE.match(name or ""):
            raise AwsError("InvalidRequestException", "ruleName must be 1-128 of [a-zA-Z0-9_]")
        if name in self.rules:
            raise AwsError("ResourceAlreadyExistsException", f"Rule {name} already exists", 409)
        rule = check_payload(payload)
        rule.update(ruleName=name, createdAt=time.time())
        self.rules[name] = rule
        self._compiled[name] = parse(rule["sql"])
        self._save()

    def replace(self, name: str, payload: dict) -> None:
        old = self._rule(name)
        rule = check_payload(payload)
        rule.update(ruleName=name, createdAt=old["createdAt"])
        self.rules[name] = rule
        self._compiled[name] = parse(rule["sql"])
        self._save()

    def delete(self, name: str) -> None:
        self._rule(name)
        del self.rules[name]
        self._compiled.pop(name, None)
        self._save()

    def set_enabled(self, name: str, enabled: bool) -> None:
        self._rule(name)["ruleDisabled"] = not enabled
        self._save()

    def get(self, name: str) -> dict:
        return {"ruleArn": self.arn(name), "rule": dict(self._rule(name))}

    def listing(self) -> list[dict]:
        return [{"ruleArn": self.arn(n), "ruleName": n, "topicPattern": self._compiled[n].topic_filter,
                 "createdAt": r["createdAt"], "ruleDisabled": r["ruleDisabled"]} for n, r in sorted(self.rules.items())]

    # -- running -----------------------------------------------------------------------
    def on_message(self, topic: str, payload: bytes, client_id: str | None = None) -> None:
        now = int(time.time() * 1000)
        if topic.startswith("$aws/rules/"):
            parts = topic.split("/", 3)
            name = parts[2] if len(parts) > 2 else ""
            rule = self.rules.get(name)
            if rule is not None and not rule["ruleDisabled"]:
                self._run(name, rule, Context(parts[3] if len(parts) > 3 else "", payload, client_id, now))
            return
        if topic.startswith("$"):
            return
        ctx = None
        for name, rule in self.rules.items():
            if rule["ruleDisabled"] or not topic_matches(self._compiled[name].topic_filter, topic):
                continue
            ctx = ctx or Context(topic, payload, client_id, now)
            self._run(name, rule, ctx)

    def _run(self, name: str, rule: dict, msg: Context) -> None:
        try:
            out = run(self._compiled[name], msg)
        except Exception:  # a bad message must not stop the engine
            log.exception("rule %s: evaluation failed", name)
            return
        if out is None:
            return
        self.counts["matched"] += 1
        failures = []
        for action in rule["actions"]:
            try:
                if "dynamoDBv2" in action and self._defer(name, rule, action, out, msg):
                    continue
                self._act(action, out, msg)
            except Exception as exc:  # noqa: BLE001 - the errorAction reports it
                failures.append(self._failure(action, exc))
        self._report(name, rule, msg, failures)

    def _failure(self, action: dict, exc: Exception) -> dict:
        self.counts["actions_failed"] += 1
        (kind, spec), = action.items()
        resource = (spec.get("putItem") or {}).get("tableName") or spec.get("topic") or ""
        return {"failedAction": kind[0].upper() + kind[1:] + "Action",
                "failedResource": resource, "errorMessage": getattr(exc, "message", str(exc))}

    def _defer(self, name: str, rule: dict, action: dict, out: dict, msg: Context) -> bool:
        """Queue a dynamoDBv2 put for this loop turn's one transaction (False: no loop, do it now)."""
        import asyncio

        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return False
        if self.ctx.extras.get("dynamodb") is None:
            return False  # fails now, through the errorAction
        table = substitute(action["dynamoDBv2"]["putItem"]["tableName"], msg)
        if not self._writes:
            loop.call_soon(self._flush_writes)
        self._writes.append((table, {k: to_dynamo(v) for k, v in out.items()}, (name, rule, action, msg)))
        return True

    def _flush_writes(self) -> None:
        writes, self._writes = self._writes, []
        store = self.ctx.extras.get("dynamodb")
        if store is None or not writes:
            return
        try:
            results = store.put_items([(t, item) for t, item, _ in writes])
        except Exception as exc:  # noqa: BLE001 - the store itself failed: every write reports it
            results = [exc] * len(writes)
        for (_, _, (name, rule, action, msg)), error in zip(writes, results, strict=True):
            if error is not None:
                self._report(name, rule, msg, [self._failure(action, error)])

    def _report(self, name: str, rule: dict, msg: Context, failures: list) -> None:
        if failures and rule.get("errorAction"):
            report = {"ruleName": name, "topic": msg.topic, "cloudwatchTraceId": str(uuid.uuid4()),
                      "clientId": msg.client_id or "",
                      "base64OriginalPayload": base64.b64encode(msg.payload).decode(), "failures": failures}
            try:
                self._act(rule["errorAction"], report, msg, raw=True)
            except Exception:
                log.exception("rule %s: errorAction failed too", name)
        elif failures:
            log.warning("rule %s: %s", name, failures)

    def _act(self, action: dict, out: dict, msg: Context, raw: bool = False) -> None:
        (kind, spec), = action.items()
        if kind == "republish":
            topic = substitute(spec["topic"], msg)
            if self.link is None:
                raise RuntimeError("the rules engine is not connected to the broker")
            self.link.publish(topic, json.dumps(out).encode(), qos=int(spec.get("qos") or 0))
        elif kind == "dynamoDBv2":
            store = self.ctx.extras.get("dynamodb")
            if store is None:
                raise RuntimeError("the sandbox's DynamoDB is not running")
            store.put_item(substitute(spec["putItem"]["tableName"], msg), {k: to_dynamo(v) for k, v in out.items()})


    async def sync_link(self) -> None:
        """Be subscribed to the broker exactly while an enabled rule exists (no rules: no cost per message)."""
        from fleetdesk.sandbox.mqtt_link import MqttLink, follow_while

        await follow_while(self, any(not r["ruleDisabled"] for r in self.rules.values()),
                           lambda: MqttLink(self.ctx.internal_mqtt, "rules", FILTERS, self.on_message))


class _Running:
    def __init__(self, engine: RulesEngine) -> None:
        self.engine = engine

    async def stop(self) -> None:
        if self.engine.link is not None:
            await self.engine.link.stop()


async def start(ctx: Any) -> _Running:
    """Start the rules engine (``ctx.extras["rules"]``)."""
    engine = RulesEngine(ctx, Path(ctx.state_dir) / "rules.json")
    await engine.sync_link()
    ctx.extras["rules"] = engine
    return _Running(engine)
