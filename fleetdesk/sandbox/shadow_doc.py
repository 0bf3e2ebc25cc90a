"""AWS IoT Device Shadow document semantics, pure (no broker, no storage).

Implements what AWS IoT documents for shadow updates: nested merge, ``null`` deletes a
key, ``"desired": null`` clears a section, arrays are replaced whole, per-leaf metadata
timestamps (epoch seconds), ``version`` +1 per accepted update, version conflicts (409),
delta = desired leaves that differ from reported, and the request limits (8 KB state,
depth 6, clientToken <= 64 bytes). Every reply echoes ``clientToken``.

The engine works on :class:`Shadow` values; the service layer persists them and
publishes the replies that :func:`apply_update`, :func:`get_reply` and
:func:`apply_delete` build.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from fleetdesk.sandbox import strict_json
from fleetdesk.shadow_limits import MAX_CLIENT_TOKEN_BYTES, MAX_DEPTH, MAX_STATE_BYTES, state_depth

VERSION_MEMORY_S = 48 * 3600  # a shadow re-created within 48 h of deletion continues its version
SECTIONS = ("desired", "reported")


class ShadowError(Exception):
    """A request the shadow service rejects, in AWS's error shape.

    Args:
        code: HTTP-like status AWS uses (400, 404, 409, 413, 429, 500).
        message: AWS's message text.
    """

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class Shadow:
    """One stored shadow (classic when ``name`` is empty).

    ``exists`` is False for a deleted shadow, which still keeps its version number: AWS
    continues the version of a shadow re-created within 48 hours of its deletion.
    """

    thing: str
    name: str = ""
    desired: dict = field(default_factory=dict)
    reported: dict = field(default_factory=dict)
    metadata: dict = field(default_factory=lambda: {"desired": {}, "reported": {}})
    version: int = 0
    timestamp: int = 0
    exists: bool = False
    state_size: int = field(default=-1, compare=False, repr=False)  # bytes of desired+reported (-1 unknown)

    def state(self) -> dict:
        """The ``state`` node as AWS returns it on get (sections present only if non-empty)."""
        out: dict[str, Any] = {}
        if self.desired:
            out["desired"] = _clone(self.desired)
        if self.reported:
            out["reported"] = _clone(self.reported)
        delta = compute_delta(self.desired, self.reported)
        if delta:
            out["delta"] = delta
        return out

    def meta(self) -> dict:
        """The ``metadata`` node (sections present only if non-empty)."""
        return {k: _clone(v) for k, v in self.metadata.items() if v}

    def to_json(self) -> str:
        """Serialize for storage."""
        return json.dumps(
            {
                "desired": self.desired,
                "reported": self.reported,
                "metadata": self.metadata,
                "version": self.version,
                "timestamp": self.timestamp,
                "exists": self.exists,
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, thing: str, name: str, text: str) -> "Shadow":
        """Rebuild a stored shadow."""
        d = json.loads(text)
        return cls(
            thing=thing,
            name=name,
            desired=d.get("desired") or {},
            reported=d.get("reported") or {},
            metadata=d.get("metadata") or {"desired": {}, "reported": {}},
            version=int(d.get("version", 0)),
            timestamp=int(d.get("timestamp", 0)),
            exists=bool(d.get("exists", True)),
        )


def _clone(value: Any) -> Any:
    """Copy a JSON value (dicts and lists only; ~10x faster than copy.deepcopy)."""
    if isinstance(value, dict):
        return {k: _clone(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clone(v) for v in value]
    return value


def now_s() -> int:
    """Current time in epoch seconds (AWS shadow timestamps are seconds)."""
    return int(time.time())


def not_found_message(thing: str, name: str = "") -> str:
    """AWS's 404 text for a missing shadow."""
    return f"No shadow exists with name: '{name or thing}'"


def error_reply(code: int, message: str, client_token: str | None, ts: int | None = None) -> dict:
    """A ``/rejected`` payload: {code, message, timestamp, clientToken?}."""
    out: dict[str, Any] = {"code": code, "message": message, "timestamp": ts or now_s()}
    if client_token is not None:
        out["clientToken"] = client_token
    return out


def _len(payload: Any) -> int:
    return len(payload) if isinstance(payload, (bytes, str)) else _size(payload)


def _size(obj: Any) -> int:
    return len(json.dumps(obj, separators=(",", ":")).encode())


def parse_request(payload: bytes | str | dict | None) -> dict:
    """Parse a request body; empty means ``{}``.

    Raises:
        ShadowError: 400 for bad JSON or a non-object document.
    """
    if isinstance(payload, dict):
        doc = payload
    elif payload is None or (isinstance(payload, (bytes, str)) and not payload.strip()):
        return {}
    else:
        try:
            doc = strict_json.loads(payload)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ShadowError(400, f"Invalid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ShadowError(400, "Invalid JSON")
    return doc


def client_token_of(doc: dict) -> str | None:
    """The request's clientToken, validated (<= 64 bytes, a string)."""
    token = doc.get("clientToken")
    if token is None:
        return None
    if not isinstance(token, str):
        raise ShadowError(400, "Invalid clientToken")
    if len(token.encode()) > MAX_CLIENT_TOKEN_BYTES:
        raise ShadowError(400, "clientToken must be at most 64 bytes")
    return token


def _check_version(doc: dict, shadow: Shadow) -> None:
    if "version" not in doc:
        return
    version = doc["version"]
    if isinstance(version, bool) or not isinstance(version, int):
        raise ShadowError(400, "Invalid version")
    if version != shadow.version:
        raise ShadowError(409, "Version conflict")


def _validate_update(doc: dict) -> dict:
    if "state" not in doc:
        raise ShadowError(400, "Missing required node: state")
    state = doc["state"]
    if not isinstance(state, dict):
        raise ShadowError(400, "Invalid JSON: state must be an object")
    for key, section in state.items():
        if key not in SECTIONS:
            raise ShadowError(400, f"State contains an invalid node: '{key}'")
        if section is not None and not isinstance(section, dict):
            raise ShadowError(400, f"Invalid JSON: state.{key} must be an object or null")
        if section is not None and state_depth(section) > MAX_DEPTH:
            raise ShadowError(400, "JSON contains too many levels of nesting; maximum is 6")
    return state


def _leaf_meta(value: Any, ts: int) -> Any:
    """Metadata mirroring a value: objects recurse, arrays get one entry per element."""
    if isinstance(value, dict):
        return {k: _leaf_meta(v, ts) for k, v in value.items()}
    if isinstance(value, list):
        return [_leaf_meta(v, ts) if isinstance(v, dict) else {"timestamp": ts} for v in value]
    return {"timestamp": ts}


def _merge(target: dict, meta: dict, patch: dict, ts: int) -> None:
    """Merge ``patch`` into ``target`` in place, updating ``meta`` alongside."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
            meta.pop(key, None)
        elif isinstance(value, dict):
            cur = target.get(key)
            if not isinstance(cur, dict):
                cur = {}
                target[key] = cur
                meta[key] = {}
            cur_meta = meta.get(key)
            if not isinstance(cur_meta, dict):
                cur_meta = {}
                meta[key] = cur_meta
            _merge(cur, cur_meta, value, ts)
            if not cur and value:  # emptied by deletions: drop the node
                target.pop(key, None)
                meta.pop(key, None)
        else:
            target[key] = _clone(value)
            meta[key] = _leaf_meta(value, ts)


def _patch_meta(patch: dict, ts: int) -> dict:
    """Metadata for the leaves a request set (null leaves report a timestamp too)."""
    out: dict[str, Any] = {}
    for key, value in patch.items():
        if isinstance(value, dict):
            out[key] = _patch_meta(value, ts)
        else:
            out[key] = _leaf_meta(value, ts) if value is not None else {"timestamp": ts}
    return out


def compute_delta(desired: dict, reported: dict) -> dict:
    """Desired leaves that differ from reported (arrays compared whole)."""
    out: dict[str, Any] = {}
    for key, want in desired.items():
        if key not in reported:
            out[key] = _clone(want)
            continue
        have = reported[key]
        if isinstance(want, dict) and isinstance(have, dict):
            sub = compute_delta(want, have)
            if sub:
                out[key] = sub
        elif want != have:
            out[key] = _clone(want)
    return out


def _restrict(delta: dict, touched: dict) -> dict:
    """Keep the delta entries under the paths a request touched."""
    out: dict[str, Any] = {}
    for key in (k for k in delta if k in touched):
        value, t = delta[key], touched[key]
        if not (isinstance(value, dict) and isinstance(t, dict)):
            out[key] = value
        elif sub := _restrict(value, t):
            out[key] = sub
    return out


def _meta_for(delta: dict, meta: dict) -> dict:
    out: dict[str, Any] = {}
    for key, value in delta.items():
        m = meta.get(key)
        if isinstance(value, dict) and isinstance(m, dict) and "timestamp" not in m:
            out[key] = _meta_for(value, m)
        elif m is not None:
            out[key] = m
    return out


def _union(a: dict, b: dict) -> dict:
    out = _clone(a)
    for key, value in b.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _union(out[key], value)
        else:
            out[key] = value if not isinstance(value, dict) else _clone(value)
    return out


def _snapshot(shadow: Shadow) -> dict:
    """previous/current for /update/documents. Shares the shadow's dicts (never mutated:
    updates work on a clone), so publish it (serialize) before changing that shadow."""
    state: dict[str, Any] = {}
    if shadow.desired:
        state["desired"] = shadow.desired
    if shadow.reported:
        state["reported"] = shadow.reported
    return {"state": state, "metadata": {k: v for k, v in shadow.metadata.items() if v}, "version": shadow.version}


@dataclass
class UpdateResult:
    """What an accepted update produced: the new shadow and the three messages to publish."""

    shadow: Shadow
    accepted: dict
    delta: dict | None
    documents: dict


def apply_update(shadow: Shadow, payload: bytes | str | dict, ts: int | None = None) -> UpdateResult:
    """Apply an ``/update`` request to a shadow.

    Args:
        shadow: the current shadow (``exists`` False if there is none yet).
        payload: the request body.
        ts: timestamp to use (epoch seconds); now if omitted.

    Returns:
        UpdateResult with the new shadow (a copy) and the accepted, delta (or None)
        and documents payloads.

    Raises:
        ShadowError: with AWS's code and message; the shadow is unchanged.
    """
    ts = ts or now_s()
    doc = parse_request(payload)
    token = client_token_of(doc)
    state = _validate_update(doc)
    if not shadow.exists and shadow.version and ts - shadow.timestamp > VERSION_MEMORY_S:
        shadow = Shadow(shadow.thing, shadow.name)  # deleted over 48 h ago: versions restart at 0
    _check_version(doc, shadow)
    new = Shadow(shadow.thing, shadow.name, _clone(shadow.desired), _clone(shadow.reported),
                 _clone(shadow.metadata), shadow.version, shadow.timestamp, shadow.exists)
    if not new.exists:
        new.desired, new.reported = {}, {}
        new.metadata = {"desired": {}, "reported": {}}
    touched: dict[str, Any] = {}
    for section in SECTIONS:
        if section not in state:
            continue
        patch = state[section]
        target = getattr(new, section)
        meta = new.metadata.setdefault(section, {})
        if patch is None:
            target.clear()
            meta.clear()
            continue
        _merge(target, meta, patch, ts)
        touched = _union(touched, patch)
    # the new state is at most the old one plus the request: measure only when that could exceed
    bound = (shadow.state_size if shadow.state_size >= 0 else MAX_STATE_BYTES) + _len(payload)
    new.state_size = -1
    if bound > MAX_STATE_BYTES:
        new.state_size = _size({"desired": new.desired, "reported": new.reported})
        if new.state_size > MAX_STATE_BYTES:
            raise ShadowError(413, "The payload exceeds the maximum size allowed")
    elif shadow.state_size >= 0:
        new.state_size = bound  # an upper bound is enough for the next check
    previous = _snapshot(shadow) if shadow.exists else None
    new.version = shadow.version + 1
    new.timestamp = ts
    new.exists = True

    accepted: dict[str, Any] = {
        "state": _clone(state),
        "metadata": {s: _patch_meta(p, ts) for s, p in state.items() if isinstance(p, dict)},
        "version": new.version,
        "timestamp": ts,
    }
    if token is not None:
        accepted["clientToken"] = token

    delta_msg = None
    if touched:
        delta = _restrict(compute_delta(new.desired, new.reported), touched)
        if delta:
            delta_msg = {
                "version": new.version,
                "timestamp": ts,
                "state": delta,
                "metadata": _meta_for(delta, new.metadata.get("desired", {})),
            }
            if token is not None:
                delta_msg["clientToken"] = token

    documents: dict[str, Any] = {"previous": previous, "current": _snapshot(new), "timestamp": ts}
    if previous is None:
        documents.pop("previous")
    if token is not None:
        documents["clientToken"] = token
    return UpdateResult(new, accepted, delta_msg, documents)


def get_reply(shadow: Shadow, payload: bytes | str | dict | None = None, ts: int | None = None) -> dict:
    """The ``/get/accepted`` payload.

    Raises:
        ShadowError: 404 when the shadow does not exist, 400 for a bad request.
    """
    doc = parse_request(payload)
    token = client_token_of(doc)
    if not shadow.exists:
        raise ShadowError(404, not_found_message(shadow.thing, shadow.name))
    out: dict[str, Any] = {
        "state": shadow.state(),
        "metadata": shadow.meta(),
        "version": shadow.version,
        "timestamp": ts or now_s(),
    }
    if token is not None:
        out["clientToken"] = token
    return out


def apply_delete(shadow: Shadow, payload: bytes | str | dict | None = None, ts: int | None = None) -> tuple[Shadow, dict]:
    """Delete a shadow; returns (tombstone keeping the version, ``/delete/accepted`` payload).

    Raises:
        ShadowError: 404 when missing, 409 on a version mismatch, 400 for a bad request.
    """
    ts = ts or now_s()
    doc = parse_request(payload)
    token = client_token_of(doc)
    if not shadow.exists:
        raise ShadowError(404, not_found_message(shadow.thing, shadow.name))
    _check_version(doc, shadow)
    gone = Shadow(thing=shadow.thing, name=shadow.name, version=shadow.version, timestamp=ts, exists=False)
    out: dict[str, Any] = {"version": shadow.version, "timestamp": ts}
    if token is not None:
        out["clientToken"] = token
    return gone, out


def token_from_raw(payload: bytes | str | dict | None) -> str | None:
    """Best-effort clientToken from a request that may be invalid (for error replies)."""
    try:
        doc = parse_request(payload)
    except ShadowError:
        return None
    token = doc.get("clientToken")
    return token if isinstance(token, str) else None
