# Wi-Fi station: connect with a timeout, report why it failed.
from fd import compat

REASONS = {201: "no AP found", 202: "wrong password", 203: "connect failed",
           1000: "idle", 1001: "connecting"}


def _attempt(wlan, ssid, password, timeout_ms):
    """Start connecting; yield None while waiting, then once (ok, reason). The caller sleeps."""
    try:
        wlan.connect(ssid, password)
    except OSError as exc:
        yield False, "connect error %s" % exc
        return
    t0 = compat.ticks_ms()
    while compat.ticks_diff(compat.ticks_ms(), t0) < timeout_ms:
        if wlan.isconnected():
            yield True, "connected"
            return
        st = wlan.status()
        if st in (201, 202, 203):
            yield False, REASONS[st]
            return
        yield None
    yield False, "timeout"


async def connect(wlan, ssid, password, timeout_ms=15000):
    """(ok, reason). Returns at once if already connected to the network."""
    wlan.active(True)
    if wlan.isconnected():
        return True, "connected"
    for result in _attempt(wlan, ssid, password, timeout_ms):
        if result:
            return result
        await compat.sleep_ms(100)


def connect_sync(wlan, ssid, password, timeout_ms=10000):
    """Blocking variant of connect() for callers outside asyncio (BLE config)."""
    import time

    wlan.active(True)
    for result in _attempt(wlan, ssid, password, timeout_ms):
        if result:
            return result
        time.sleep(0.1)


def scan(wlan):
    """[(ssid, rssi, auth)] strongest first."""
    wlan.active(True)
    out = []
    for rec in wlan.scan():
        ssid = rec[0].decode() if isinstance(rec[0], bytes) else rec[0]
        out.append((ssid, rec[3], rec[4]))
    out.sort(key=lambda r: -r[1])
    return out
