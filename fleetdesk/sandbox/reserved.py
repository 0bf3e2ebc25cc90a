"""Reserved topics: what no client may touch and what only the service may publish.

On AWS IoT Core the broker's own topics are unreachable, and the ``$aws/...`` topics whose
messages the service produces (shadow accepted/rejected/delta/documents, jobs notify and
replies, lifecycle/presence events, fleet-provisioning replies) cannot be published by a
device or through the ``iot-data`` Publish API, whatever a policy says. The sandbox's broker
is mosquitto, whose administration rides on ``$CONTROL/dynamic-security/v1``: that tree is
closed to every login except the authorizer's own.

Enforced three ways: high-priority deny ACLs in every device role and in the WebSockets
(app) role (:func:`deny_acls`), a check in the ``iot-data`` Publish route
(:func:`publish_refusal`), and the services' link ignoring (and clearing) retained messages
on ``$`` topics, so a request can never be replayed to a service on subscribe.
"""

from __future__ import annotations

from fleetdesk.sandbox.mqtt_wire import topic_matches

CONTROL_TREE = "$CONTROL/#"
DENY_PRIORITY = 1000  # above every policy ACL (policy.DENY_PRIORITY is 100)

SERVICE_ONLY = (
    # Device Shadow replies and notifications (classic and named)
    "$aws/things/+/shadow/+/accepted",
    "$aws/things/+/shadow/+/rejected",
    "$aws/things/+/shadow/update/delta",
    "$aws/things/+/shadow/update/documents",
    "$aws/things/+/shadow/name/+/+/accepted",
    "$aws/things/+/shadow/name/+/+/rejected",
    "$aws/things/+/shadow/name/+/update/delta",
    "$aws/things/+/shadow/name/+/update/documents",
    # Jobs notifications and replies
    "$aws/things/+/jobs/notify",
    "$aws/things/+/jobs/notify-next",
    "$aws/things/+/jobs/+/accepted",
    "$aws/things/+/jobs/+/rejected",
    "$aws/things/+/jobs/+/+/accepted",
    "$aws/things/+/jobs/+/+/rejected",
    # lifecycle / presence / registry events
    "$aws/events/#",
    # fleet provisioning replies
    "$aws/certificates/+/+/accepted",
    "$aws/certificates/+/+/rejected",
    "$aws/provisioning-templates/+/provision/+/accepted",
    "$aws/provisioning-templates/+/provision/+/rejected",
)


def is_control(topic: str) -> bool:
    return topic == "$CONTROL" or topic.startswith("$CONTROL/")


def is_service_only(topic: str) -> bool:
    """True for a topic only the service publishes on AWS."""
    return any(topic_matches(p, topic) for p in SERVICE_ONLY)


def publish_refusal(topic: str, retain: bool) -> str | None:
    """Why a client (device or ``iot-data`` Publish) may not publish there, or None."""
    if is_control(topic) or topic.startswith("$SYS"):
        return f"{topic!r} is a reserved broker topic; no client may publish to it"
    if is_service_only(topic):
        return f"{topic!r} is a reserved topic that only AWS IoT publishes to"
    if retain and topic.startswith("$"):
        return f"retained messages are not supported on reserved topics ({topic!r})"
    return None


def deny_acls() -> list[dict]:
    """Deny ACLs (priority :data:`DENY_PRIORITY`) every non-service login carries."""
    out = []
    for acltype in ("publishClientSend", "publishClientReceive", "subscribePattern"):
        out.append({"acltype": acltype, "topic": CONTROL_TREE, "allow": False, "priority": DENY_PRIORITY})
        out.append({"acltype": acltype, "topic": "$SYS/#", "allow": False, "priority": DENY_PRIORITY})
    for topic in SERVICE_ONLY:
        out.append({"acltype": "publishClientSend", "topic": topic, "allow": False, "priority": DENY_PRIORITY})
    return out
