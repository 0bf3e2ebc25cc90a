"""Fleet indexing in the sandbox: the AWS_Things index kept up to date, and dynamic thing groups.

The index (:class:`~fleetdesk.sandbox.index_store.IndexStore`) follows the registry (registry
changes are applied before the API call that made them returns), the Device Shadow service
(``/update/documents`` and ``/delete/accepted``, batched per event-loop turn) and presence
(client events), as AWS's index follows them within seconds. What is indexed is set by
``UpdateIndexingConfiguration`` (kept in the index file); turning indexing on, or changing
what it covers, rebuilds the index from the registry, the shadows and presence.

Dynamic thing groups are real registry groups whose membership the service keeps equal to
their query's matches (so jobs, ListThingsInThingGroup and policies see them); joins and
leaves are announced as registry changes (continuous jobs follow them).
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fleetdesk.sandbox.awserror import AwsError
from fleetdesk.sandbox.index_store import IndexStore, flatten

if TYPE_CHECKING:
    from fleetdesk.sandbox.mqtt_link import MqttLink

log = logging.getLogger(__name__)

THING_INDEX = "AWS_Things"
GROUP_INDEX = "AWS_ThingGroups"
DEFAULT_CONFIG = {"thingIndexingConfiguration": {"thingIndexingMode": "OFF", "thingConnectivityIndexingMode": "OFF"},
                  "thingGroupIndexingConfiguration": {"thingGroupIndexingMode": "OFF"}}
MANAGED_FIELDS = {
    "thingName": "String", "thingId": "String", "thingTypeName": "String", "thingGroupNames": "String",
    "registry.version": "Number",
}
SHADOW_MANAGED = {"shadow.version": "Number", "shadow.hasDelta": "Boolean"}
CONNECTIVITY_MANAGED = {"connectivity.connected": "Boolean", "connectivity.timestamp": "Number",
                        "connectivity.disconnectReason": "String", "connectivity.version": "Number"}
SHADOW_FILTERS = [
    "$aws/things/+/shadow/update/documents",
    "$aws/things/+/shadow/name/+/update/documents",
    "$aws/things/+/shadow/delete/accepted",
    "$aws/things/+/shadow/name/+/delete/accepted",
]
MAX_NAMED_SHADOWS = 10  # AWS default quota of named shadow names in the configuration


def _invalid(message: str) -> AwsError:
    return AwsError("InvalidRequestException", message)


def check_config(new: dict) -> dict:
    """The validated thing-indexing configuration (AWS's rules), normalised. Raises AwsError."""
    cfg = dict(new or {})
    mode = cfg.get("thingIndexingMode")
    if mode not in ("OFF", "REGISTRY", "REGISTRY_AND_SHADOW"):
        raise _invalid("thingIndexingMode must be OFF, REGISTRY or REGISTRY_AND_SHADOW")
    conn = cfg.get("thingConnectivityIndexingMode") or "OFF"
    if conn not in ("OFF", "STATUS"):
        raise _invalid("thingConnectivityIndexingMode must be OFF or STATUS")
    named = cfg.get("namedShadowIndexingMode") or "OFF"
    if named not in ("OFF", "ON"):
        raise _invalid("namedShadowIndexingMode must be OFF or ON")
    if mode == "OFF" and (conn != "OFF" or named != "OFF" or cfg.get("customFields")):
        raise _invalid("thingIndexingMode is OFF: connectivity, named shadow and custom field indexing need "
                       "thingIndexingMode REGISTRY or REGISTRY_AND_SHADOW")
    if named == "ON" and mode != "REGISTRY_AND_SHADOW":
        raise _invalid("namedShadowIndexingMode ON needs thingIndexingMode REGISTRY_AND_SHADOW")
    names = ((cfg.get("filter") or {}).get("namedShadowNames")) or []
    if len(names) > MAX_NAMED_SHADOWS:
        raise AwsError("LimitExceededException", f"at most {MAX_NAMED_SHADOWS} named shadow names may be indexed")
    for f in cfg.get("customFields") or []:
        name, ftype = f.get("name") or "", f.get("type")
        if ftype not in ("Number", "String", "Boolean"):
            raise _invalid(f"custom field {name!r}: type must be Number, String or Boolean")
        if not (name.startswith("attributes.") or name.startswith("shadow.")):
            raise _invalid(f"custom field {name!r}: custom fields are attributes.* or shadow.* fields")
        if name.startswith("shadow.") and mode != "REGISTRY_AND_SHADOW":
            raise _invalid(f"custom field {name!r} is a shadow field: it needs thingIndexingMode REGISTRY_AND_SHADOW")
    cfg["thingConnectivityIndexingMode"] = conn
    cfg.pop("managedFields", None)
    return cfg


class FleetIndex:
    """The index service (``ctx.extras["index"]``).

    Args:
        ctx: the sandbox context (registry, extras["shadows"], extras["presence"]).
        store: where the index lives.
    """

    def __init__(self, ctx: Any, store: IndexStore) -> None:
        self.ctx = ctx
        self.store = store
        self._dirty: set[str] = set()
        self._flushing = False
        self.link: MqttLink | None = None  # the shadow-events link, only while indexing is on
        self.config = json.loads(store.get_meta("config") or "null") or json.loads(json.dumps(DEFAULT_CONFIG))

    # -- configuration -----------------------------------------------------------------
    @property
    def thing_config(self) -> dict:
        return self.config["thingIndexingConfiguration"]

    @property
    def enabled(self) -> bool:
        return self.thing_config.get("thingIndexingMode", "OFF") != "OFF"

    def field_types(self) -> dict[str, str]:
        """Fields that aggregations accept, with their types."""
        cfg = self.thing_config
        out = dict(MANAGED_FIELDS)
        if cfg.get("thingIndexingMode") == "REGISTRY_AND_SHADOW":
            out.update(SHADOW_MANAGED)
        if cfg.get("thingConnectivityIndexingMode") == "STATUS":
            out.update(CONNECTIVITY_MANAGED)
        for f in cfg.get("customFields") or []:
            out[f["name"]] = f["type"]
        return out

    def get_configuration(self) -> dict:
        thing = dict(self.thing_config)
        if self.enabled:
            thing["managedFields"] = [{"name": k, "type": v} for k, v in self.field_types().items()
                                      if k in MANAGED_FIELDS or k in SHADOW_MANAGED or k in CONNECTIVITY_MANAGED]
            thing.setdefault("customFields", [])
        return {"thingIndexingConfiguration": thing,
                "thingGroupIndexingConfiguration": self.config["thingGroupIndexingConfiguration"]}

    def update_configuration(self, thing_cfg: dict | None, group_cfg: dict | None) -> None:
        if thing_cfg is not None:
            cfg = check_config(thing_cfg)
            if cfg["thingIndexingMode"] == "OFF" and self.store.dynamic_groups():
                raise _invalid("fleet indexing cannot be turned off while dynamic thing groups exist; "
                               "delete them first (DeleteDynamicThingGroup)")
            old = self.thing_config
            self.config["thingIndexingConfiguration"] = cfg
            self._save()
            if cfg["thingIndexingMode"] == "OFF":
                self.store.clear()
            elif {k: v for k, v in cfg.items() if k != "customFields"} != \
                    {k: v for k, v in old.items() if k not in ("customFields", "managedFields")}:
                self.rebuild()
        if group_cfg is not None:
            mode = group_cfg.get("thingGroupIndexingMode")
            if mode not in ("OFF", "ON"):
                raise _invalid("thingGroupIndexingMode must be OFF or ON")
            self.config["thingGroupIndexingConfiguration"] = {"thingGroupIndexingMode": mode}
            self._save()

    def _save(self) -> None:
        self.store.set_meta("config", json.dumps(self.config))

    def require_index(self, index_name: str | None) -> None:
        name = index_name or THING_INDEX
        if name != THING_INDEX:
            if name == GROUP_INDEX:
                raise AwsError("ResourceNotFoundException",
                               "the sandbox indexes things only (AWS_Things); AWS_ThingGroups is not served", 404)
            raise AwsError("ResourceNotFoundException", f"Index {name} does not exist", 404)
        if not self.enabled:
            raise AwsError("ResourceNotFoundException",
                           "Index AWS_Things does not exist: turn on fleet indexing with UpdateIndexingConfiguration "
                           "(thingIndexingMode REGISTRY or REGISTRY_AND_SHADOW)", 404)

    # -- documents ---------------------------------------------------------------------
    def _connectivity_map(self) -> dict[str, Any]:
        presence = self.ctx.extras.get("presence")
        table = getattr(presence, "table", {}) or {}
        by_thing: dict[str, Any] = {}
        for c in table.values():
            if c.thing_name and (c.thing_name not in by_thing or c.timestamp_ms > by_thing[c.thing_name].timestamp_ms):
                by_thing[c.thing_name] = c
        return {**by_thing, **{k: v for k, v in table.items()}}

    def _connectivity(self, name: str, cmap: dict | None = None):
        if cmap is not None:
            return cmap.get(name)
        presence = self.ctx.extras.get("presence")
        table = getattr(presence, "table", {}) or {}
        c = table.get(name)
        if c is None:
            matches = [x for x in table.values() if x.thing_name == name]
            c = max(matches, key=lambda x: x.timestamp_ms) if matches else None
        return c

    def document(self, row: tuple, groups: list[str], shadows: dict[str, Any], conn) -> tuple[dict, list]:
        """(search document, searchable fields) of one thing."""
        name, thing_id, ttype, attrs, version = row
        attributes = json.loads(attrs) if isinstance(attrs, str) else dict(attrs or {})
        cfg = self.thing_config
        doc: dict[str, Any] = {"thingName": name, "thingId": thing_id, "attributes": attributes,
                               "thingGroupNames": list(groups)}
        fields: list[tuple[str, object]] = [("thingName", name), ("thingId", thing_id)]
        if ttype:
            doc["thingTypeName"] = ttype
            fields.append(("thingTypeName", ttype))
        fields += [("thingGroupNames", g) for g in groups]
        fields += [(f"attributes.{k}", v) for k, v in attributes.items()]
        if cfg.get("thingIndexingMode") == "REGISTRY_AND_SHADOW":
            sdoc: dict[str, Any] = {}
            classic = shadows.get("")
            if classic is not None and classic.exists:
                sdoc.update(self._shadow_part(classic, "shadow", fields))
            if cfg.get("namedShadowIndexingMode") == "ON":
                wanted = ((cfg.get("filter") or {}).get("namedShadowNames")) or []
                named = {n: self._shadow_part(shadows[n], f"shadow.name.{n}", fields)
                         for n in wanted if n in shadows and shadows[n].exists}
                if named:
                    sdoc["name"] = named
            if sdoc:
                doc["shadow"] = json.dumps(sdoc, separators=(",", ":"))
        if cfg.get("thingConnectivityIndexingMode") == "STATUS":
            c: dict[str, Any] = {"connected": bool(conn and conn.connected)}
            fields.append(("connectivity.connected", c["connected"]))
            if conn is not None:
                c["timestamp"] = int(conn.timestamp_ms)
                fields += [("connectivity.timestamp", c["timestamp"]), ("connectivity.version", conn.version)]
                if not conn.connected and conn.disconnect_reason:
                    c["disconnectReason"] = conn.disconnect_reason
                    fields.append(("connectivity.disconnectReason", conn.disconnect_reason))
            doc["connectivity"] = c
        return doc, fields

    @staticmethod
    def _shadow_part(shadow, prefix: str, fields: list) -> dict:
        state = shadow.state()
        part: dict[str, Any] = {k: state[k] for k in ("desired", "reported", "delta") if k in state}
        meta = shadow.meta()
        if meta:
            part["metadata"] = meta
        part["version"] = shadow.version
        part["hasDelta"] = "delta" in state
        for section in ("desired", "reported", "delta"):
            if section in state:
                flatten(f"{prefix}.{section}", state[section], fields)
        fields.append((f"{prefix}.hasDelta", part["hasDelta"]))
        if prefix == "shadow":
            fields.append(("shadow.version", shadow.version))
        return part

    def _shadows_of(self, name: str) -> dict[str, Any]:
        service = self.ctx.extras.get("shadows")
        if service is None or self.thing_config.get("thingIndexingMode") != "REGISTRY_AND_SHADOW":
            return {}
        out = {"": service.store.get(name, "")}
        if self.thing_config.get("namedShadowIndexingMode") == "ON":
            for n in ((self.thing_config.get("filter") or {}).get("namedShadowNames")) or []:
                out[n] = service.store.get(name, n)
        return out

    def reindex(self, name: str) -> None:
        """Bring one thing's entry up to date (removed if the thing is gone)."""
        self.reindex_many([name])

    def reindex_many(self, names: list[str]) -> None:
        """Bring these things' entries up to date in one transaction (gone things are removed)."""
        if not self.enabled:
            return
        reg = self.ctx.registry
        items = []
        for name in names:
            row = reg.db.execute("SELECT name, thing_id, type, attributes, version FROM things WHERE name=?",
                                 (name,)).fetchone()
            if row is None:
                self.store.delete(name)
                continue
            groups = [r[0] for r in reg.db.execute("SELECT grp FROM group_members WHERE thing=? ORDER BY grp",
                                                   (name,))]
            items.append(self.document(row, groups, self._shadows_of(name), self._connectivity(name)))
        if items:
            self.store.put_many(items)

    def rebuild(self) -> int:
        """Rebuild the whole index; returns the number of things indexed."""
        reg = self.ctx.registry
        self.store.clear()
        if not self.enabled:
            return 0
        groups: dict[str, list[str]] = {}
        for grp, thing in reg.db.execute("SELECT grp, thing FROM group_members ORDER BY grp"):
            groups.setdefault(thing, []).append(grp)
        shadows: dict[str, dict[str, Any]] = {}
        service = self.ctx.extras.get("shadows")
        if service is not None and self.thing_config.get("thingIndexingMode") == "REGISTRY_AND_SHADOW":
            for s in service.store.all_existing():
                shadows.setdefault(s.thing, {})[s.name] = s
        cmap = self._connectivity_map()
        rows = reg.db.execute("SELECT name, thing_id, type, attributes, version FROM things").fetchall()
        return self.store.replace_all(self.document(row, groups.get(row[0], []), shadows.get(row[0], {}),
                                                    cmap.get(row[0])) for row in rows)

    # -- following changes -------------------------------------------------------------
    def mark(self, name: str) -> None:
        """Reindex ``name`` soon (changes arriving together are applied in one batch)."""
        if not self.enabled:
            return
        self._dirty.add(name)
        if not self._flushing:
            self._flushing = True
            asyncio.get_running_loop().call_soon(lambda: asyncio.ensure_future(self.flush()))

    async def flush(self) -> None:
        """Apply the pending changes now."""
        try:
            while self._dirty:
                names, self._dirty = sorted(self._dirty), set()
                for i in range(0, len(names), 500):
                    self.reindex_many(names[i:i + 500])
                    await asyncio.sleep(0)  # let the broker links read between batches
                await self.follow_dynamic_groups(names)
        except Exception:  # the index must keep following
            log.exception("fleet index: reindex failed")
        finally:
            self._flushing = False

    async def sync_link(self, want: bool | None = None) -> None:
        """Follow shadow events exactly while indexing is on (off: no cost per shadow update).
        ``want`` True starts following before indexing is turned on (no update falls in between)."""
        from fleetdesk.sandbox.mqtt_link import MqttLink, follow_while

        await follow_while(self, self.enabled if want is None else want,
                           lambda: MqttLink(self.ctx.internal_mqtt, "fleet-index", SHADOW_FILTERS,
                                            self.on_shadow_message))

    def on_shadow_message(self, topic: str, payload: bytes) -> None:
        parts = topic.split("/")
        if len(parts) >= 3 and parts[0] == "$aws" and parts[1] == "things":
            self.mark(parts[2])

    def on_client_event(self, event: Any) -> None:
        if getattr(event, "kind", None) not in ("connected", "disconnected"):
            return
        if self.thing_config.get("thingConnectivityIndexingMode") != "STATUS":
            return
        name = getattr(event, "thing_name", None) or event.client_id
        self.mark(name)

    async def on_registry_change(self, change: Any) -> None:
        if not self.enabled:
            return
        kind, action, name, details = change.kind, change.action, change.name, change.details or {}
        if kind == "thing":
            self.reindex(name)
            await self.follow_dynamic_groups([name])
        elif kind == "thing_group" and details.get("thing"):
            thing = str(details["thing"])
            if thing.startswith("arn:"):
                thing = thing.split(":thing/", 1)[-1]
            self.reindex(thing)
            group = str(name).split(":thinggroup/", 1)[-1]
            if group not in self.store.dynamic_groups():
                await self.follow_dynamic_groups([thing])
        elif kind == "thing_group" and action == "deleted":
            self.store.delete_dynamic_group(name)
            for thing in self.store.names_with("thingGroupNames", name):
                self.reindex(thing)

    # -- dynamic groups ----------------------------------------------------------------
    async def follow_dynamic_groups(self, names: list[str]) -> None:
        """Join/leave dynamic groups for these things after their entries changed."""
        groups = self.store.dynamic_groups()
        if not groups:
            return
        reg = self.ctx.registry
        for name in names:
            if self.store.doc(name) is None:
                continue
            member_of = {r[0] for r in reg.db.execute("SELECT grp FROM group_members WHERE thing=?", (name,))}
            for group, query in groups.items():
                want = self.store.matches(query, name)
                if want and group not in member_of:
                    reg.add_thing_to_group(group=group, thing=name)
                    await self.ctx.changed("thing_group", "updated", group, thing=name, member="added")
                elif not want and group in member_of:
                    reg.remove_thing_from_group(group=group, thing=name)
                    await self.ctx.changed("thing_group", "updated", group, thing=name, member="removed")

    def fill_dynamic_group(self, group: str, query: str) -> None:
        """Make ``group``'s members exactly the query's matches (creation, query change)."""
        reg = self.ctx.registry
        want = set(self.store.matching_names(query))
        have = {r[0] for r in reg.db.execute("SELECT thing FROM group_members WHERE grp=?", (group,))}
        with reg.db:
            reg.db.execute("BEGIN")
            reg.db.executemany("INSERT OR IGNORE INTO group_members VALUES (?,?)", [(group, t) for t in want - have])
            reg.db.executemany("DELETE FROM group_members WHERE grp=? AND thing=?", [(group, t) for t in have - want])
        for thing in want ^ have:
            self.reindex(thing)


class _Running:
    def __init__(self, index: FleetIndex, unlisten: list) -> None:
        self.index, self.unlisten = index, unlisten

    async def stop(self) -> None:
        for u in self.unlisten:
            u()
        if self.index.link is not None:
            await self.index.link.stop()
        await self.index.flush()
        self.index.store.set_meta("clean", "1")
        self.index.store.close()


async def start(ctx: Any) -> _Running:
    """Start fleet indexing (``ctx.extras["index"]``)."""
    store = IndexStore(Path(ctx.state_dir) / "fleet_index.sqlite")
    index = FleetIndex(ctx, store)
    ctx.extras["index"] = index
    if index.enabled:
        if store.get_meta("clean") != "1":
            index.rebuild()  # a crash may have lost index writes: the registry and shadows are the truth
        elif index.thing_config.get("thingConnectivityIndexingMode") == "STATUS":
            for name in store.names_with("connectivity.connected", "true"):
                index.reindex(name)  # a restart disconnected everyone (presence says so)
    store.set_meta("clean", "0")
    await index.sync_link()
    unlisten = [ctx.registry_changed.listen(index.on_registry_change), ctx.events.listen(index.on_client_event)]
    return _Running(index, unlisten)
