# RPC over MQTT (Mongoose-OS style): requests on <thing>/rpc, replies on <thing>/rpc/resp.
#   request  {"id": 7, "method": "Sys.GetInfo", "args": {...}}
#   reply    {"id": 7, "result": {...}}  or  {"id": 7, "error": {"code": -32601, "message": "..."}}
import os

from fd import compat
from fd.version import APP, VERSION


class RpcError(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message


class Rpc:
    def __init__(self, dev):
        self.dev = dev
        self.topic = dev.thing + "/rpc"
        self.methods = {
            "Sys.GetInfo": self.sys_get_info,
            "Config.Get": self.config_get,
            "Config.Set": self.config_set,
            "FS.List": self.fs_list,
            "RPC.List": self.rpc_list,
            "Sys.ConfigMode": self.sys_config_mode,
        }

    def topics(self):
        return [self.topic]

    async def handle(self, topic, payload):
        rid = None
        try:
            req = compat.loads(payload)
            if not isinstance(req, dict) or "method" not in req:
                raise RpcError(-32600, "invalid request: needs an object with 'method'")
            rid = req.get("id")
            fn = self.methods.get(req["method"])
            if fn is None:
                raise RpcError(-32601, "method not found: %s" % req["method"])
            args = req.get("args") or {}
            if not isinstance(args, dict):
                raise RpcError(-32602, "args must be an object")
            reply = {"id": rid, "result": await fn(args)}
        except RpcError as exc:
            reply = {"id": rid, "error": {"code": exc.code, "message": exc.message}}
        except ValueError as exc:
            reply = {"id": rid, "error": {"code": -32700, "message": "parse error: %s" % exc}}
        except Exception as exc:
            reply = {"id": rid, "error": {"code": -32000, "message": repr(exc)}}
        await self.dev.publish(self.topic + "/resp", reply, qos=1)

    async def sys_config_mode(self, args):
        # back to BLE Config mode (re-provisioning in the field): flag it, reply, then reboot
        import asyncio

        self.dev.settings.update(config_mode=True)

        async def later():
            await asyncio.sleep(0.5)
            try:
                await self.dev.reboot("config mode requested over RPC")
            except Exception:
                pass

        asyncio.create_task(later())
        return {"config_mode": True}

    async def rpc_list(self, args):
        return sorted(self.methods)

    async def sys_get_info(self, args):
        dev = self.dev
        info = {"app": APP, "fw_version": dev.settings["firmware_version"], "fw_build": VERSION,
                "mac": dev.board.mac_hex.upper(), "arch": dev.board.chip, "thing_name": dev.thing,
                "uptime": compat.ticks_diff(compat.ticks_ms(), dev.started) // 1000,
                "mode": dev.mode, "boots": dev.settings["boots"]}
        info.update(heap_info())  # ram_free (after a collect), ram_min_free, ram_largest_free
        try:
            st = os.statvfs(dev.path("/"))
            info["fs_size"] = st[0] * st[2]
            info["fs_free"] = st[0] * st[3]
        except (OSError, AttributeError):
            pass
        return info

    async def config_get(self, args):
        dev = self.dev
        s = dev.settings
        cfg = {"thing_name": dev.thing, "endpoint": dev.config.endpoint, "port": dev.config.port,
               "refresh": s["refresh"], "on": bool(s["on"]), "reboot": s["reboot"],
               "firmware_version": s["firmware_version"]}
        key = args.get("key")
        if key:
            if key not in cfg:
                raise RpcError(-32602, "unknown config key %r" % key)
            return {key: cfg[key]}
        return cfg

    async def config_set(self, args):
        from fd.shadow import apply_settings

        changes = args.get("config", args)
        if not isinstance(changes, dict) or not changes:
            raise RpcError(-32602, "Config.Set needs {\"config\": {...}} with refresh and/or on")
        applied, errors = apply_settings(self.dev, changes)
        if applied:
            await self.dev.shadow.report(applied)
        if errors:
            raise RpcError(-32602, "; ".join(errors))
        return {"applied": applied}

    async def fs_list(self, args):
        path = args.get("path") or "/"
        if not isinstance(path, str) or ".." in path.split("/"):
            raise RpcError(-32602, "path must be an absolute device path without '..'")
        full = self.dev.path(path)
        if not compat.is_dir(full):
            raise RpcError(-32602, "no such directory: %s" % path)
        out = []
        for name, is_dir, size in compat.list_dir(full):
            if name.endswith(".tmp"):
                continue
            out.append({"name": name, "dir": is_dir, "size": 0 if is_dir else size})
        out.sort(key=lambda e: e["name"])
        return out


def largest_free():
    """Largest block the GC heap can still hand out (bytes, 16-byte steps; -1 off MicroPython)."""
    if not compat.IS_MPY:
        return -1
    lo, hi = 0, compat.mem_free()
    while hi - lo > 16:  # bisect with real allocations: MicroPython has no API for it
        mid = (lo + hi) // 2
        try:
            b = bytearray(mid)
            del b
            lo = mid
        except MemoryError:
            hi = mid
    return lo


def heap_info():
    """{"ram_free", "ram_min_free", "ram_largest_free", "ram_total"} (+ the IDF heap on an ESP32)."""
    free = compat.mem_free()
    info = {"ram_free": free, "ram_min_free": compat._low[0], "ram_total": -1}
    try:
        import gc

        info["ram_total"] = free + gc.mem_alloc()  # before the probe below leaves garbage
    except (ImportError, AttributeError):
        pass
    info["ram_largest_free"] = largest_free()
    try:
        import esp32

        caps = esp32.idf_heap_info(esp32.HEAP_DATA)  # [(total, free, largest, min_free), ...]
        info["idf_free"] = sum(h[1] for h in caps)
        info["idf_largest_free"] = max(h[2] for h in caps)
        info["idf_min_free"] = sum(h[3] for h in caps)
    except (ImportError, AttributeError, ValueError, TypeError):
        pass
    return info
