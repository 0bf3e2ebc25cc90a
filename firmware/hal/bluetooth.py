# Off-board shim of MicroPython's `bluetooth` module: the subset fd/ble_*.py uses
# (BLE.active/config/irq/gap_advertise/gap_disconnect/gatts_*; UUID; FLAG_*).
#
# The GATT server is exposed over a local TCP socket (127.0.0.1) speaking JSON lines,
# and advertised through a registry file the host's virtual BLE backend scans
# (fleetdesk/virtual/ble_link.py). Runs under the MicroPython unix port and CPython.
#
# Registry dir: $FLEETDESK_BLE_REGISTRY, else $FLEETDESK_DATA_DIR/virtual-ble, else
# ~/.local/share/fleetdesk/virtual-ble. Port: $FD_BLE_PORT or a random free one.
# Address: base MAC ($FD_MAC, else machine.unique_id()) + 2, as on an ESP32.
#
# Wire protocol (one JSON object per line, bytes as hex):
#   host -> dev  {"op":"connect","mtu":N}            dev -> host {"op":"connected","mtu":M,"services":[...]}
#   host -> dev  {"op":"read","id":i,"handle":h}     dev -> host {"op":"read","id":i,"data":hex}
#   host -> dev  {"op":"write","id":i,"handle":h,"data":hex,"rsp":bool}
#                                                    dev -> host {"op":"write","id":i} (if rsp)
#   dev -> host  {"op":"notify","handle":h,"data":hex}
#   either side  {"op":"error","id":i,"att":code,"error":text}; closing the socket = disconnect

import asyncio
import binascii
import json
import os

FLAG_BROADCAST = 0x0001
FLAG_READ = 0x0002
FLAG_WRITE_NO_RESPONSE = 0x0004
FLAG_WRITE = 0x0008
FLAG_NOTIFY = 0x0010
FLAG_INDICATE = 0x0020

_IRQ_CENTRAL_CONNECT = 1
_IRQ_CENTRAL_DISCONNECT = 2
_IRQ_GATTS_WRITE = 3
_IRQ_MTU_EXCHANGED = 21
_ATT_INVALID_LENGTH = 0x0D
_ATT_INVALID_HANDLE = 0x01


class UUID:
    def __init__(self, value):
        if isinstance(value, int):
            self._s = "%08x-0000-1000-8000-00805f9b34fb" % value
        elif isinstance(value, UUID):
            self._s = value._s
        else:
            s = str(value).lower()
            if len(s) == 4:
                s = "0000%s-0000-1000-8000-00805f9b34fb" % s
            if len(s.replace("-", "")) != 32:
                raise ValueError("invalid UUID")
            self._s = s
    def __str__(self):
        return self._s

    def __repr__(self):
        return "UUID('%s')" % self._s

    def __eq__(self, other):
        return isinstance(other, UUID) and other._s == self._s

    def __hash__(self):
        return hash(self._s)


def _hex(b):
    return binascii.hexlify(bytes(b)).decode()


def _registry_dir():
    d = os.getenv("FLEETDESK_BLE_REGISTRY")
    if not d:
        base = os.getenv("FLEETDESK_DATA_DIR")
        if not base:
            base = (os.getenv("HOME") or "/tmp") + "/.local/share/fleetdesk"
        d = base + "/virtual-ble"
    _mkdirs(d)
    return d


def _mkdirs(path):
    cur = ""
    for part in path.split("/"):
        if not part:
            cur = cur or "/"
            continue
        cur = cur + part if cur.endswith("/") else cur + "/" + part
        try:
            os.mkdir(cur)
        except OSError:
            pass


def _base_mac():
    env = os.getenv("FD_MAC")
    if env:
        return binascii.unhexlify(env.replace(":", "").replace("-", ""))
    try:
        import machine

        mac = bytes(machine.unique_id())
        if len(mac) == 6:
            return mac
    except Exception:
        pass
    return b"\x24\x0a" + os.urandom(4)


def _parse_ad(payload, out):
    i = 0
    payload = bytes(payload or b"")
    while i + 1 < len(payload):
        ln = payload[i]
        if ln == 0 or i + 1 + ln > len(payload):
            break
        kind = payload[i + 1]
        data = payload[i + 2:i + 1 + ln]
        if kind in (0x08, 0x09):
            out["name"] = data.decode()
        elif kind in (0x06, 0x07):
            for j in range(0, len(data) - 15, 16):
                h = _hex(bytes(reversed(data[j:j + 16])))
                out["service_uuids"].append("%s-%s-%s-%s-%s" % (h[:8], h[8:12], h[12:16], h[16:20], h[20:]))
        elif kind == 0xFF and len(data) >= 2:
            out["manufacturer_data"][str(data[0] | data[1] << 8)] = _hex(data[2:])
        i += 1 + ln


def _nodelay(writer):
    # request/response over loopback: without TCP_NODELAY every reply waits for a delayed ACK
    sock = getattr(writer, "s", None)
    if sock is None:
        try:
            sock = writer.get_extra_info("socket")
        except Exception:
            return
    try:
        sock.setsockopt(6, 1, 1)  # IPPROTO_TCP, TCP_NODELAY
    except Exception:
        pass


class BLE:
    _inst = None

    def __new__(cls, *args):
        if BLE._inst is None:
            BLE._inst = object.__new__(cls)
            BLE._inst._init()
        return BLE._inst

    def __init__(self, *args):
        pass

    def _init(self):
        self._active = False
        self._irq = None
        self._chars = {}  # handle -> dict(uuid, flags, value, buf)
        self._services = []
        self._name = "MPY"
        self._mtu = 256
        self._adv = None
        self._server = None
        self._port = None
        self._conn = None  # (conn_handle, writer, mtu)
        self._conn_seq = 0
        self._out = []
        self._flush = None
        mac = bytearray(_base_mac())
        mac[5] = (mac[5] + 2) & 0xFF
        self._addr = bytes(mac)

    # ---- configuration ---------------------------------------------------------------
    def active(self, value=None):
        if value is None:
            return self._active
        if not value and self._active:
            self._shutdown()
        self._active = bool(value)
        return self._active

    def config(self, *args, **kwargs):
        if args:
            key = args[0]
            if key == "mac":
                return (0, self._addr)
            if key == "gap_name":
                return self._name
            if key == "mtu":
                return self._mtu
            raise ValueError("unknown config param")
        for key, value in kwargs.items():
            if key == "gap_name":
                self._name = value
            elif key == "mtu":
                self._mtu = int(value)
            elif key in ("rxbuf", "addr_mode", "io", "bond", "le_secure", "mitm"):
                pass
            else:
                raise ValueError("unknown config param")

    def irq(self, handler):
        self._irq = handler

    def _fire(self, event, data):
        if self._irq is not None:
            self._irq(event, data)

    # ---- GATT server -------------------------------------------------------------------
    def gatts_register_services(self, services):
        self._chars = {}
        self._services = []
        handle = 1
        out = []
        for svc_uuid, chars in services:
            handle += 1  # service declaration
            handles = []
            svc = {"uuid": str(UUID(svc_uuid)), "chars": []}
            for ch in chars:
                uuid, flags = ch[0], ch[1]
                handle += 1  # characteristic declaration
                vh = handle
                handle += 1
                self._chars[vh] = {"uuid": str(UUID(uuid)), "flags": flags, "value": b"", "buf": 20}
                svc["chars"].append({"uuid": str(UUID(uuid)), "handle": vh, "flags": flags})
                if flags & (FLAG_NOTIFY | FLAG_INDICATE):
                    handle += 1  # CCCD
                handles.append(vh)
            self._services.append(svc)
            out.append(tuple(handles))
        return tuple(out)

    def _char(self, handle):
        ch = self._chars.get(handle)
        if ch is None:
            raise ValueError("invalid handle")
        return ch

    def gatts_read(self, value_handle):
        return self._char(value_handle)["value"]

    def gatts_write(self, value_handle, data, send_update=False):
        self._char(value_handle)["value"] = bytes(data)
        if send_update and self._conn is not None:
            self.gatts_notify(self._conn[0], value_handle)

    def gatts_set_buffer(self, value_handle, length, append=False):
        self._char(value_handle)["buf"] = int(length)

    def gatts_notify(self, conn_handle, value_handle, data=None):
        ch = self._char(value_handle)
        if self._conn is None or self._conn[0] != conn_handle:
            raise OSError(107)  # ENOTCONN, as MicroPython raises for an unknown connection
        if data is None:
            data = ch["value"]
        data = bytes(data)[:self._conn[2] - 3]  # a notification carries at most MTU-3 bytes
        self._send({"op": "notify", "handle": value_handle, "data": _hex(data)})

    def gatts_indicate(self, conn_handle, value_handle, data=None):
        self.gatts_notify(conn_handle, value_handle, data)

    # ---- GAP -----------------------------------------------------------------------------
    def gap_advertise(self, interval_us, adv_data=None, resp_data=None, connectable=True):
        if interval_us is None:
            self._adv = None
        else:
            adv = {"name": None, "service_uuids": [], "manufacturer_data": {}}
            _parse_ad(adv_data, adv)
            _parse_ad(resp_data, adv)
            self._adv = adv
            if self._server is None:
                self._server = asyncio.create_task(self._serve())
                return
        self._publish()

    def gap_disconnect(self, conn_handle):
        if self._conn is None or self._conn[0] != conn_handle:
            return False
        self._drop()
        return True

    # ---- transport ---------------------------------------------------------------------
    def _addr_str(self):
        return ":".join("%02X" % b for b in self._addr)

    def _reg_path(self):
        return _registry_dir() + "/" + _hex(self._addr) + ".json"

    def _publish(self):
        if self._port is None:
            return
        if self._adv is None or self._conn is not None:
            self._unpublish()
            return
        entry = {"address": self._addr_str(), "name": self._adv["name"] or self._name,
                 "host": "127.0.0.1", "port": self._port,
                 "service_uuids": self._adv["service_uuids"],
                 "manufacturer_data": self._adv["manufacturer_data"],
                 "rssi": int(os.getenv("FD_BLE_RSSI") or -48)}
        path = self._reg_path()
        with open(path + ".tmp", "w") as f:
            f.write(json.dumps(entry))
        os.rename(path + ".tmp", path)

    def _unpublish(self):
        try:
            os.remove(self._reg_path())
        except OSError:
            pass

    async def _serve(self):
        fixed = os.getenv("FD_BLE_PORT")
        for _ in range(50):
            port = int(fixed) if fixed else 20000 + int.from_bytes(os.urandom(2), "big") % 40000
            try:
                self._server_obj = await asyncio.start_server(self._client, "127.0.0.1", port)
                self._port = port
                break
            except OSError:
                if fixed:
                    raise
        self._publish()

    def _shutdown(self):
        self._adv = None
        self._unpublish()
        self._drop()
        if self._server is not None:
            try:
                self._server_obj.close()
            except Exception:
                pass
            self._server = None
            self._port = None

    def _send(self, obj):
        if self._conn is None:
            return
        writer = self._conn[1]
        writer.write((json.dumps(obj) + "\n").encode())
        if self._flush is None:
            self._flush = asyncio.create_task(self._drain(writer))

    async def _drain(self, writer):
        try:
            await writer.drain()
        except Exception:
            pass
        self._flush = None

    def _drop(self):
        conn = self._conn
        if conn is None:
            return
        self._conn = None
        try:
            conn[1].close()
        except Exception:
            pass
        self._fire(_IRQ_CENTRAL_DISCONNECT, (conn[0], 0, self._addr))
        self._publish()

    async def _client(self, reader, writer):
        me = None
        _nodelay(writer)
        try:
            line = await reader.readline()
            if not line:
                raise OSError("probe")
            req = json.loads(line)
            if req.get("op") != "connect" or self._conn is not None or self._adv is None:
                writer.write(b'{"op":"error","error":"not connectable"}\n')
                await writer.drain()
                raise OSError("refused")
            self._conn_seq += 1
            mtu = max(23, min(int(req.get("mtu") or 23), self._mtu))
            me = (self._conn_seq, writer, mtu)
            self._conn = me
            self._publish()  # connected: advertising stops
            self._send({"op": "connected", "mtu": mtu, "address": self._addr_str(),
                        "name": self._name, "services": self._services})
            self._fire(_IRQ_CENTRAL_CONNECT, (me[0], 0, b"\x00" * 6))
            if mtu > 23:
                self._fire(_IRQ_MTU_EXCHANGED, (me[0], mtu))
            while self._conn is me:
                line = await reader.readline()
                if not line or self._conn is not me:
                    break
                self._request(me, json.loads(line))
        except Exception:
            pass
        if me is not None and self._conn is me:
            self._drop()
        try:
            writer.close()
        except Exception:
            pass

    def _request(self, me, req):
        op = req.get("op")
        rid = req.get("id")
        if op == "disconnect":
            self._drop()
            return
        ch = self._chars.get(req.get("handle"))
        if ch is None:
            self._send({"op": "error", "id": rid, "att": _ATT_INVALID_HANDLE, "error": "invalid handle"})
            return
        if op == "read":
            self._send({"op": "read", "id": rid, "data": _hex(ch["value"])})
        elif op == "write":
            data = binascii.unhexlify(req.get("data", ""))
            if len(data) > me[2] - 3:
                self._send({"op": "error", "id": rid, "att": _ATT_INVALID_LENGTH,
                            "error": "write longer than MTU-3"})
                return
            ch["value"] = data[:ch["buf"]]
            if req.get("rsp"):
                self._send({"op": "write", "id": rid})
            self._fire(_IRQ_GATTS_WRITE, (me[0], req["handle"]))
        else:
            self._send({"op": "error", "id": rid, "att": 0x06, "error": "request not supported"})
