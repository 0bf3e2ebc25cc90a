# Test harness: runs the firmware's BLE Config mode (fd.ble_config.run) directly, under
# the MicroPython unix port or CPython, with a `dev` over a plain directory.
#   micropython tests/ble/device_main.py FS_DIR     (sys.path gets firmware/ and firmware/hal)
# Env: FD_MAC, FD_WIFI_NETWORKS ({ssid: password}), FD_BLE_REGISTRY/FLEETDESK_DATA_DIR.
# Prints "COMMITTED <json>" and exits 0 after a successful commit.
import sys

HERE = sys.argv[0].rsplit("/", 1)[0] if "/" in sys.argv[0] else "."
ROOT = HERE + "/../.."
sys.path.insert(0, ROOT + "/firmware/hal")
sys.path.insert(0, ROOT + "/firmware")

import asyncio
import binascii
import json
import os

from fd import ble_config, compat

FS = sys.argv[1]


class Dev:
    chip = "esp32"

    def __init__(self):
        self.mac = binascii.unhexlify((os.getenv("FD_MAC") or "240ac4000001").replace(":", ""))
        self.nets = json.loads(os.getenv("FD_WIFI_NETWORKS") or '{"fieldnet": "secret123"}')

    def load_config(self):
        try:
            with open(FS + "/config.json") as f:
                return json.loads(f.read())
        except OSError:
            return {}

    def save_config(self, cfg):
        with open(FS + "/config.json", "w") as f:
            f.write(json.dumps(cfg))

    def write_file(self, path, data):
        full = FS + path
        compat.makedirs(full.rsplit("/", 1)[0])
        with open(full, "wb") as f:
            f.write(data)

    def wifi_scan(self):
        return [(ssid, -40 - 7 * i, 3) for i, ssid in enumerate(sorted(self.nets))]

    def wifi_connect(self, ssid, password):
        if ssid not in self.nets:
            return False, "no AP found"
        if self.nets[ssid] != password:
            return False, "wrong password"
        return True, "connected"

    def reboot(self):
        print("REBOOT")


cfg = asyncio.run(ble_config.run(Dev()))
print("COMMITTED", json.dumps(cfg))
