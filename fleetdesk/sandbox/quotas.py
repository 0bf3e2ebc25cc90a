"""IoT Core's control-plane rate quotas in the sandbox, on by default, as AWS enforces them.

Each quota is a token bucket per account (the sandbox is one account): ``rate`` requests per
second, a burst of one second's worth. A request over the quota is refused as AWS refuses it —
``ThrottlingException`` "Rate exceeded" (HTTP 400 on ``iot``, 429 on ``iot-data``), which
botocore's retry modes back off from — and counted per caller (the SigV4 access key id). The
counts go to ``<state_dir>/throttled.json`` (at most once a second) for
``fleetdesk sandbox status --json``.

The per-connection MQTT quotas (:data:`MQTT_DEFAULTS`) are enforced by the mTLS front on the
bytes it bridges (:mod:`fleetdesk.sandbox.mqtt_quotas`) and counted here per client id
(``mqtt_throttled`` in the status file).

Benches that need more set ``FLEETDESK_SANDBOX_QUOTAS`` when they start the sandbox, e.g.
``SearchIndex=200,ListThings=off,PublishInPerSecond=1000`` (a number: requests per second, or
the limit; ``off``: not limited). Defaults and sources: README, "Sandbox quotas".
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any

from fleetdesk.sandbox.awserror import AwsError

# requests per second per account (AWS defaults, see README for the quota page each comes from)
DEFAULTS: dict[str, float] = {"SearchIndex": 20.0, "ListThings": 10.0, "GetThingShadow": 4000.0}
# IoT Core's per-connection MQTT quotas (AWS IoT Core endpoints and quotas, message broker;
# README "Sandbox quotas" has the behaviour when each is exceeded)
MQTT_DEFAULTS: dict[str, float] = {
    "PublishInPerSecond": 100.0,  # per connection, not adjustable
    "PublishOutPerSecond": 100.0,
    "SubscriptionsPerConnection": 50.0,
    "TopicFiltersPerSubscribe": 8.0,
    "ConnectPerSecondPerClientId": 1.0,  # not adjustable
    "KeepAliveMin": 30.0,  # seconds: a smaller keep-alive is raised to it
    "KeepAliveMax": 1200.0,  # a larger one (or 0) is lowered to it
    "SessionExpiryMax": 3600.0,  # persistent session expiry, 1 hour by default
    "PayloadMax": 131072.0,  # 128 KB
    "StoredMessagesPerSecond": 10.0,  # a resumed persistent session's stored messages are paced to it
}
SERVICE_OF = {"SearchIndex": "iot", "ListThings": "iot", "GetThingShadow": "iot-data"}
ENV = "FLEETDESK_SANDBOX_QUOTAS"
STATUS_FILE = "throttled.json"
_KEY = re.compile(r"Credential=([^/,\s]+)/")


def parse_overrides(text: str) -> dict[str, float | None]:
    """``"SearchIndex=200,ListThings=off"`` -> {"SearchIndex": 200.0, "ListThings": None}.

    Raises:
        ValueError: an unknown quota name or a value that is neither a number nor ``off``.
    """
    out: dict[str, float | None] = {}
    for part in filter(None, (p.strip() for p in (text or "").split(","))):
        name, _, value = part.partition("=")
        name, value = name.strip(), value.strip().lower()
        if name not in DEFAULTS and name not in MQTT_DEFAULTS:
            raise ValueError(f"{ENV}: unknown quota {name!r} (known: {', '.join([*DEFAULTS, *MQTT_DEFAULTS])})")
        if value == "off":
            out[name] = None
            continue
        try:
            rate = float(value)
        except ValueError:
            raise ValueError(f"{ENV}: {name}={value!r} is not a number of requests per second or 'off'") from None
        if rate <= 0:
            raise ValueError(f"{ENV}: {name} must be above 0 (or 'off')")
        out[name] = rate
    return out


class Quotas:
    """Token buckets + throttle counts (``ctx.extras["quotas"]``)."""

    def __init__(self, state_dir: Path | None, overrides: dict[str, float | None] | None = None,
                 clock=time.monotonic) -> None:
        overrides = overrides or {}
        self.rates: dict[str, float | None] = {**DEFAULTS, **{k: v for k, v in overrides.items() if k in DEFAULTS}}
        self.mqtt: dict[str, float | None] = {**MQTT_DEFAULTS,
                                              **{k: v for k, v in overrides.items() if k in MQTT_DEFAULTS}}
        self.clock = clock
        self.state_dir = state_dir
        now = clock()
        self._buckets = {k: [v, now] for k, v in self.rates.items() if v}
        self._connects: dict[str, list[float]] = {}  # client id -> token bucket
        self.throttled: dict[str, dict[str, int]] = {}
        self.mqtt_throttled: dict[str, dict[str, int]] = {}
        # client id -> the subscriptions its broker session holds (ConnectionQuotas keeps it)
        self.sessions: dict[str, set[str]] = {}
        self._dirty = False
        self._last_save = 0.0

    def take(self, api: str) -> bool:
        """Spend one request of ``api``'s quota; False when it is used up."""
        rate = self.rates.get(api)
        if not rate:
            return True
        bucket = self._buckets[api]
        now = self.clock()
        bucket[0] = min(rate, bucket[0] + (now - bucket[1]) * rate)
        bucket[1] = now
        if bucket[0] >= 1.0:
            bucket[0] -= 1.0
            return True
        return False

    def control_plane(self, api: str, request: Any) -> None:
        """Raise AWS's ThrottlingException if ``api`` is over its quota (and count it)."""
        if self.take(api):
            return
        m = _KEY.search(request.headers.get("Authorization", "") if request is not None else "")
        caller = m.group(1) if m else "unsigned"
        per = self.throttled.setdefault(caller, {})
        per[api] = per.get(api, 0) + 1
        self._save_soon()
        raise AwsError("ThrottlingException", "Rate exceeded", 429 if SERVICE_OF.get(api) == "iot-data" else 400)

    def connect_allowed(self, client_id: str) -> bool:
        """Spend the client id's CONNECT of this second (``ConnectPerSecondPerClientId``); False
        (and counted) when it is spent. A refused CONNECT spends nothing."""
        rate = self.mqtt.get("ConnectPerSecondPerClientId")
        if not rate:
            return True
        now = self.clock()
        bucket = self._connects.setdefault(client_id, [1.0, now])
        bucket[0] = min(1.0, bucket[0] + (now - bucket[1]) * rate)
        bucket[1] = now
        if bucket[0] >= 1.0:
            bucket[0] -= 1.0
            if len(self._connects) > 10000:  # forget full buckets (they equal a new one)
                self._connects = {k: b for k, b in self._connects.items()
                                  if b[0] + (now - b[1]) * rate < 1.0}
            return True
        self.count_mqtt(client_id, "ConnectPerSecondPerClientId")
        return False

    def count_mqtt(self, client_id: str, quota: str, n: int = 1) -> None:
        """Note ``n`` MQTT requests of ``client_id`` refused or dropped under ``quota``."""
        per = self.mqtt_throttled.setdefault(client_id, {})
        per[quota] = per.get(quota, 0) + n
        self._save_soon()

    def snapshot(self) -> dict:
        return {"quotas": {**self.rates, **self.mqtt}, "throttled": self.throttled,
                "mqtt_throttled": self.mqtt_throttled}

    def _save_soon(self) -> None:
        self._dirty = True
        if self.clock() - self._last_save >= 1.0:
            self.save()

    def save(self) -> None:
        if self.state_dir is None:
            return
        self._dirty = False
        self._last_save = self.clock()
        path = Path(self.state_dir) / STATUS_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.snapshot()))
        os.replace(tmp, path)


def load_status(state_dir: Path) -> dict | None:
    """What the running sandbox last wrote (quotas in force, throttled counts per caller)."""
    try:
        return json.loads((Path(state_dir) / STATUS_FILE).read_text())
    except (OSError, ValueError):
        return None


class _Running:
    def __init__(self, quotas: Quotas, task) -> None:
        self.quotas, self.task = quotas, task

    async def stop(self) -> None:
        self.task.cancel()
        self.quotas.save()


async def start(ctx: Any) -> _Running:
    """Turn the quotas on (``ctx.extras["quotas"]``); ``FLEETDESK_SANDBOX_QUOTAS`` overrides."""
    import asyncio

    from fleetdesk.errors import SandboxError

    try:
        overrides = parse_overrides(os.environ.get(ENV, ""))
    except ValueError as exc:
        raise SandboxError(str(exc), f"e.g. {ENV}=SearchIndex=200,ListThings=off") from exc
    quotas = Quotas(Path(ctx.state_dir), overrides)
    quotas.save()
    ctx.extras["quotas"] = quotas

    async def flush() -> None:
        while True:
            await asyncio.sleep(1.0)
            if quotas._dirty:
                quotas.save()

    return _Running(quotas, asyncio.ensure_future(flush()))
