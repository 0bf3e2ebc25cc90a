"""AWS IoT policy documents -> mosquitto dynamic-security ACLs and iot:Connect checks.

Supported: Effect Allow/Deny; Action iot:Connect, iot:Publish, iot:Subscribe, iot:Receive,
iot:* and *; Resource ARNs ``arn:aws:iot:<region>:<account>:topic/...``, ``topicfilter/...``,
``client/...`` and ``*``, with the policy variables ``${iot:Connection.Thing.ThingName}``,
``${iot:Connection.Thing.ThingTypeName}``, ``${iot:Connection.Thing.Attributes[name]}`` and
``${iot:ClientId}``. AWS's ``*`` wildcard maps to MQTT wildcards where it spans whole topic
levels (``a/*`` -> ``a/#``, ``a/*/b`` -> ``a/+/b``); a ``*`` or ``?`` inside a level cannot be
expressed as an MQTT filter and is left out (so the sandbox errs on refusing, never on
granting). A Deny wins over an Allow (higher ACL priority). Conditions: only
``iot:Connection.Thing.IsAttached`` (Bool true) is understood; a statement with any other
condition is ignored.
"""

from __future__ import annotations

import fnmatch
import json
import re

THING_VAR = "${iot:Connection.Thing.ThingName}"
CLIENT_VAR = "${iot:ClientId}"

_ACTION_ACL = {
    "iot:publish": ("publishClientSend", "topic"),
    "iot:receive": ("publishClientReceive", "topic"),
    "iot:subscribe": ("subscribePattern", "topicfilter"),
}
DENY_PRIORITY = 100
ALLOW_PRIORITY = 10


def _as_list(value) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _condition_holds(condition, thing: str | None) -> bool:
    """Only ``{"Bool": {"iot:Connection.Thing.IsAttached": "true"}}`` is understood; any other
    condition makes the statement not apply (refuse rather than over-grant)."""
    if not condition:
        return True
    if not isinstance(condition, dict) or set(condition) != {"Bool"} or not isinstance(condition["Bool"], dict):
        return False
    for key, value in condition["Bool"].items():
        if key.lower() != "iot:connection.thing.isattached" or str(value).lower() != "true":
            return False
    return thing is not None


def _statements(doc: dict, thing: str | None = None) -> list[dict]:
    return [st for st in _as_list(doc.get("Statement"))
            if isinstance(st, dict) and _condition_holds(st.get("Condition"), thing)]


def _action_matches(pattern: str, action: str) -> bool:
    return fnmatch.fnmatchcase(action.lower(), str(pattern).lower())


_ATTR_VAR = re.compile(r"\$\{iot:Connection\.Thing\.Attributes\[([^\]]+)\]\}")
TYPE_VAR = "${iot:Connection.Thing.ThingTypeName}"


def _substitute(resource: str, thing: str | None, client_id: str | None, info: dict | None = None) -> str | None:
    """Resolve policy variables; None if one cannot be resolved (the resource then grants nothing).

    ``info`` = {"type": thing type name or None, "attributes": {name: value}} of ``thing``.
    """
    if THING_VAR in resource:
        if not thing:
            return None
        resource = resource.replace(THING_VAR, thing)
    if TYPE_VAR in resource:
        if not info or not info.get("type"):
            return None
        resource = resource.replace(TYPE_VAR, info["type"])
    if _ATTR_VAR.search(resource):
        attrs = (info or {}).get("attributes") or {}
        if any(m.group(1) not in attrs for m in _ATTR_VAR.finditer(resource)):
            return None
        resource = _ATTR_VAR.sub(lambda m: attrs[m.group(1)], resource)
    if CLIENT_VAR in resource:
        if not client_id:
            return None
        resource = resource.replace(CLIENT_VAR, client_id)
    return None if "${" in resource else resource


def _resource_path(resource: str, kind: str) -> str | None:
    """The part after ``<kind>/`` of an IoT ARN ("*" for a bare "*"), else None."""
    if resource == "*":
        return "*"
    parts = resource.split(":", 5)
    if len(parts) != 6 or parts[0] != "arn" or parts[2] != "iot":
        return None
    tail = parts[5]
    if tail == "*":
        return "*"
    if tail.startswith(kind + "/"):
        return tail[len(kind) + 1 :]
    return None


def aws_topic_to_mqtt(path: str) -> list[str]:
    """AWS resource topic pattern -> MQTT ACL patterns (empty if not expressible)."""
    if path == "*":
        return ["#", "$aws/#"]
    levels = path.split("/")
    out = []
    for i, level in enumerate(levels):
        last = i == len(levels) - 1
        if level == "*":
            out.append("#" if last else "+")
        elif "*" in level or "?" in level:
            return []
        else:
            out.append(level)
    return ["/".join(out)]


def topic_acls(documents: list[dict] | tuple[dict, ...], thing: str | None, client_id: str | None,
               info: dict | None = None) -> list[dict]:
    """Dynamic-security ACL entries for the given policy documents, variables resolved
    (``info``: the thing's {"type", "attributes"} for the ThingTypeName/Attributes variables)."""
    acls: dict[tuple, dict] = {}
    for doc in documents:
        for st in _statements(doc, thing):
            allow = st.get("Effect") == "Allow"
            actions = [str(a) for a in _as_list(st.get("Action"))]
            for action, (acltype, kind) in _ACTION_ACL.items():
                if not any(_action_matches(a, action) for a in actions):
                    continue
                for res in _as_list(st.get("Resource")):
                    res = _substitute(str(res), thing, client_id, info)
                    path = _resource_path(res, kind) if res else None
                    if path is None:
                        continue
                    for topic in aws_topic_to_mqtt(path):
                        key = (acltype, topic, allow)
                        acls[key] = {"acltype": acltype, "topic": topic, "allow": allow,
                                     "priority": ALLOW_PRIORITY if allow else DENY_PRIORITY}
    return sorted(acls.values(), key=lambda a: (a["acltype"], a["topic"], a["allow"]))


def may_connect(documents, thing: str | None, client_id: str, info: dict | None = None) -> bool:
    """True if the policies allow iot:Connect for ``client_id`` (a Deny wins)."""
    allowed = False
    for doc in documents:
        for st in _statements(doc, thing):
            if not any(_action_matches(a, "iot:connect") for a in _as_list(st.get("Action"))):
                continue
            for res in _as_list(st.get("Resource")):
                res = _substitute(str(res), thing, client_id, info)
                path = _resource_path(res, "client") if res else None
                if path is None or not fnmatch.fnmatchcase(client_id, path):
                    continue
                if st.get("Effect") == "Deny":
                    return False
                allowed = True
    return allowed


def load_policy_file(path) -> str:
    """A policy template file's text, compacted (checked to be JSON)."""
    with open(path, encoding="utf-8") as fh:
        return json.dumps(json.load(fh), separators=(",", ":"))
