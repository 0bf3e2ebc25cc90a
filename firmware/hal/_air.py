# Shared off-board facts for the hal shims, read from environment variables.
#
# FD_MAC            board MAC, hex with or without ':' (default derived from the pid)
# FD_CHIP           esp32 | esp32s3 | esp32c3 | esp8266 (default esp32)
# FD_WIFI_NETWORKS  JSON {ssid: password} the virtual "air" offers (default: any network works)
# FD_AIR_FILE       optional path of a JSON file with the same shape, re-read on every
#                   check, so a test can take Wi-Fi away and give it back at runtime
# FD_DHT_SEED       integer seed for the simulated DHT11 (default derived from the MAC)
# FD_GPIO           host:port of the virtual board's input-pin channel (see machine.py)
import os
import json

RESET_EXIT_CODE = 75  # machine.reset() off-board: the runner restarts the firmware


def env(name, default=None):
    try:
        v = os.getenv(name)
    except Exception:
        v = None
    return default if v is None or v == "" else v


def mac():
    v = env("FD_MAC")
    if v:
        v = v.replace(":", "").replace("-", "")
        out = bytearray()
        for i in range(0, 12, 2):
            out.append(int(v[i:i + 2], 16))
        return bytes(out)
    return b"\x24\x0a\xc4\x00\x00\x01"


def chip():
    return env("FD_CHIP", "esp32")


def networks():
    """{ssid: password} or None (= any ssid/password connects)."""
    path = env("FD_AIR_FILE")
    if path:
        try:
            with open(path) as f:
                return json.loads(f.read())
        except (OSError, ValueError):
            return {}
    v = env("FD_WIFI_NETWORKS")
    if v:
        return json.loads(v)
    return None
