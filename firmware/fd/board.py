# The hardware the app touches, through MicroPython's own modules (or the hal shims
# off-board): LED on a Pin, a DHT11, the Wi-Fi station, the MAC, the chip, reset.
import sys

LED_PIN = 2
DHT_PIN = 4


def _detect_chip():
    if sys.platform == "esp8266":
        return "esp8266"
    if sys.platform == "esp32":
        import os

        m = os.uname().machine.upper()
        for name in ("ESP32S3", "ESP32C3", "ESP32S2", "ESP32C6"):
            if name in m:
                return name.lower()
        return "esp32"
    try:
        import _air  # pyright: ignore[reportMissingImports] - the off-board hal only (ImportError on a board)

        return _air.chip()
    except ImportError:
        return sys.platform


class Board:
    """Hardware facade. `overrides` (off-board only) gives one simulated board its own
    identity when many run in one process: mac (bytes), chip, dht_seed,
    dht_error_rate, led_pin, dht_pin."""

    def __init__(self, overrides=None):
        ov = overrides or {}
        import machine
        import network

        self.wlan = network.WLAN(network.STA_IF)
        self.mac = ov.get("mac") or self.wlan.config("mac")
        if ov.get("mac"):
            try:
                self.wlan.config(mac=self.mac)
            except Exception:
                pass
        self.chip = ov.get("chip") or _detect_chip()
        self.led = machine.Pin(ov.get("led_pin", LED_PIN), machine.Pin.OUT, value=0)
        self.dht = None
        self.dht_problem = None
        try:
            import dht

            self.dht = dht.DHT11(machine.Pin(ov.get("dht_pin", DHT_PIN)))
            if ov.get("dht_seed") is not None and hasattr(self.dht, "reseed"):
                self.dht.reseed(ov["dht_seed"])  # pyright: ignore[reportAttributeAccessIssue] - the off-board hal's DHT only, hasattr-guarded
            if ov.get("dht_error_rate") is not None and hasattr(self.dht, "ERROR_RATE"):
                self.dht.ERROR_RATE = ov["dht_error_rate"]  # pyright: ignore[reportAttributeAccessIssue] - the off-board hal's DHT only, hasattr-guarded
        except Exception as exc:
            self.dht_problem = "DHT11 unavailable: %r" % (exc,)

    @property
    def mac_hex(self):
        return "".join("%02x" % b for b in self.mac)

    @property
    def has_ble(self):
        return self.chip != "esp8266"

    def set_led(self, on):
        self.led.value(1 if on else 0)

    def read_dht(self):
        """(temperature, humidity) in whole degC / %RH. Raises OSError like the driver."""
        if self.dht is None:
            raise OSError(19, self.dht_problem or "no sensor")
        self.dht.measure()
        return self.dht.temperature(), self.dht.humidity()

    def reset(self):
        import machine

        machine.reset()
