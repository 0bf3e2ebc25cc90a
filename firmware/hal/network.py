# Off-board shim of MicroPython's `network` module: a WLAN station in a virtual "air".
import _air

STA_IF = 0
AP_IF = 1
STAT_IDLE = 1000
STAT_CONNECTING = 1001
STAT_WRONG_PASSWORD = 202
STAT_NO_AP_FOUND = 201
STAT_CONNECT_FAIL = 203
STAT_GOT_IP = 1010
AUTH_OPEN = 0
AUTH_WPA2_PSK = 3


class WLAN:
    def __init__(self, interface_id=STA_IF):
        self._if = interface_id
        self._active = False
        self._ssid = None
        self._status = STAT_IDLE
        self._mac = _air.mac()

    def active(self, is_active=None):
        if is_active is None:
            return self._active
        self._active = bool(is_active)
        if not self._active:
            self.disconnect()

    def scan(self):
        nets = _air.networks()
        if nets is None:
            nets = {"fleetdesk-lab": ""}
        out = []
        i = 0
        for ssid, pw in nets.items():
            i += 1
            out.append((ssid.encode(), bytes([2, 0, 0, 0, 0, i]), 6, -40 - 7 * i,
                        AUTH_WPA2_PSK if pw else AUTH_OPEN, False))
        return out

    def connect(self, ssid=None, key=None, bssid=None):
        if not self._active:
            raise OSError("STA must be active")
        nets = _air.networks()
        if nets is None:
            ok = True
        elif ssid not in nets:
            self._status = STAT_NO_AP_FOUND
            return
        else:
            ok = (nets[ssid] or "") == (key or "")
        if ok:
            self._ssid = ssid
            self._status = STAT_GOT_IP
        else:
            self._status = STAT_WRONG_PASSWORD

    def disconnect(self):
        self._ssid = None
        self._status = STAT_IDLE

    def status(self, param=None):
        if param == "rssi":
            return -52
        if self._status == STAT_GOT_IP:
            nets = _air.networks()
            if nets is not None and self._ssid not in nets:  # the AP went away
                self._status = STAT_NO_AP_FOUND
                self._ssid = None
        return self._status

    def isconnected(self):
        return self.status() == STAT_GOT_IP

    def ifconfig(self, cfg=None):
        return ("10.0.0.%d" % (self._mac[5] or 1), "255.255.255.0", "10.0.0.254", "10.0.0.254")

    def config(self, *args, **kwargs):
        if args:
            if args[0] == "mac":
                return self._mac
            if args[0] in ("ssid", "essid"):
                return self._ssid or ""
            if args[0] == "hostname":
                return "esp32-%02x%02x%02x" % (self._mac[3], self._mac[4], self._mac[5])
            raise ValueError("unknown config param")
        if "mac" in kwargs:
            self._mac = kwargs["mac"]
        return None
