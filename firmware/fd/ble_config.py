# Config mode over BLE: `await run(dev)` advertises FD-<last 3 MAC bytes>, runs the
# provisioning protocol v1 (firmware/PROTOCOL.md) and returns the committed config
# after a successful commit. The caller (Config mode) then reboots into Normal mode.
#
# dev offers: .mac (bytes), .chip, .load_config(), .save_config(dict),
# .write_file(path, bytes), .wifi_scan() -> [(ssid, rssi, auth)],
# .wifi_connect(ssid, password) -> (ok, reason), .reboot().

import asyncio
import json

import bluetooth

from fd.ble_gatt import GattServer
from fd.ble_proto import CH_CTRL, ProtoError, hexs, plain
from fd.ble_session import ConfigSession


def device_name(mac):
    return "FD-" + hexs(bytes(mac)[-3:]).upper()


def _pop(cfg, mac):
    pop = cfg.get("pop")
    if isinstance(pop, str) and pop:
        return pop.encode()
    print("BLE config: WARNING no PoP in /config.json, using the MAC (insecure)")
    return hexs(bytes(mac)).encode()


async def run(dev, ble=None):
    cfg = dev.load_config() or {}
    name = device_name(dev.mac)
    if ble is None:
        ble = bluetooth.BLE()
    ble.active(True)
    ble.config(gap_name=name, mtu=512)
    srv = GattServer(ble)
    sess = ConfigSession(dev, _pop(cfg, dev.mac), name)
    srv.set_value(CH_CTRL, json.dumps(sess.status_plain()).encode())
    srv.advertise(name, sess.provisioned())
    print("BLE config: advertising as", name)
    while True:
        kind, data = await srv.next_event()
        if kind == "connect":
            sess.reset_link()
            print("BLE config: central connected")
            continue
        if kind == "disconnect":
            sess.reset_link()
            print("BLE config: central disconnected")
            if sess.committed is not None:
                break
            srv.advertise(name, sess.provisioned())
            continue
        try:
            msg = srv.reasm[kind].feed(data)
        except ProtoError as exc:
            srv.send(kind, plain({"v": 1, "ok": False, "code": exc.code, "error": exc.msg}))
            continue
        except Exception as exc:  # never let a frame take the device down
            srv.send(kind, plain({"v": 1, "ok": False, "code": "internal", "error": str(exc)}))
            continue
        if msg is None:
            continue
        try:
            reply = sess.handle(kind, msg)
        except Exception as exc:
            print("BLE config: error handling frame:", repr(exc))
            reply = plain({"v": 1, "ok": False, "code": "internal", "error": "internal error"})
        if reply:
            srv.send(kind, reply)
        if sess.committed is not None:
            print("BLE config: committed, leaving Config mode")
            await asyncio.sleep(0.2)
            srv.disconnect()
            break
    srv.stop_advertising()
    return sess.committed
