# Config mode (not provisioned: BLE config service) and Idle mode (init failed).
from fd import compat, wifi
from fd.compat import asyncio


class ConfigDevice:
    """What fd.ble_config.run(dev) gets: the board seen from the BLE config service."""

    def __init__(self, dev):
        self._dev = dev
        self.mac = dev.board.mac
        self.chip = dev.board.chip

    def load_config(self):
        return dict(self._dev.config.data)

    def save_config(self, data):
        self._dev.config.save(data)

    def write_file(self, path, data):
        compat.write_bytes(self._dev.path(path), data)

    def wifi_scan(self):
        return wifi.scan(self._dev.board.wlan)

    def wifi_connect(self, ssid, password):
        return wifi.connect_sync(self._dev.board.wlan, ssid, password)

    def reboot(self):
        self._dev.board.reset()


async def config_mode(dev):
    """Await the BLE config service; returns "reset" after a successful commit."""
    dev.set_mode("config")
    if not dev.board.has_ble:
        return await idle(dev, "not provisioned and %s has no Bluetooth: flash a config.json "
                               "with certs (fleetdesk flash station) to provision it" % dev.board.chip, "config")
    try:
        from fd import ble_config
    except ImportError as exc:
        return await idle(dev, "not provisioned and the BLE config service is missing (%s)" % exc, "config")
    try:
        import bluetooth  # noqa: F401
    except ImportError as exc:
        return await idle(dev, "not provisioned and bluetooth is unavailable (%s)" % exc, "config")
    compat.collect()  # before ble.active(True): NimBLE and the session want room
    dev.say("config: waiting for BLE provisioning (mac %s)" % dev.board.mac_hex)
    await ble_config.run(ConfigDevice(dev))
    dev.settings.update(config_mode=False)
    dev.say("config: committed, rebooting into normal mode")
    return "reset"


async def idle(dev, reason, mode="idle"):
    """Stay idle until reset, repeating why on the console every minute."""
    dev.set_mode(mode)
    while True:
        dev.say("%s: %s" % (mode, reason), force=True)
        await asyncio.sleep(60)
