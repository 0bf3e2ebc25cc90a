# The board's button (seed 000): a short press counts in `btnCount`, reported in the shadow
# and published to devices/<thing>/events (QoS 0); held >= 3 s the board goes back to
# Config mode (BLE provisioning), as RPC Sys.ConfigMode does.
#
# Active low with a pull-up: the BOOT button of a dev board (GPIO0; GPIO9 on an ESP32-C3).
# `button_pin` in /config.json moves it (null = no button). The interrupt only wakes the
# task; the task debounces (20 ms, as the seed) and times the press.
from fd import compat
from fd.compat import asyncio

DEBOUNCE_MS = 20
LONG_PRESS_MS = 3000
HOLD_POLL_MS = 50
BOOT_PIN = {"esp32c3": 9}  # other chips: GPIO0


def pin_number(dev):
    """The button's GPIO, or (None, why) when the board has none / the config is wrong."""
    cfg = dev.config.get("button_pin", BOOT_PIN.get(dev.board.chip, 0)) if dev.config else 0
    pin = dev.ov.get("button_pin", cfg)
    if pin is None or pin is False:
        return None, "no button (button_pin is null)"
    if isinstance(pin, bool) or not isinstance(pin, int) or pin < 0 or pin > 48:
        return None, "button_pin %r is not a GPIO number: no button" % (pin,)
    return pin, None


def start(dev):
    """The Button of this device, or None (told on the console)."""
    pin, why = pin_number(dev)
    if pin is None:
        dev.say("[warning] " + why, force=True)
        return None
    try:
        return Button(dev, pin)
    except Exception as exc:  # a bad pin must not stop the device
        dev.say("[warning] button on GPIO%d unavailable: %r" % (pin, exc), force=True)
        return None


class Button:
    def __init__(self, dev, pin_no):
        import machine

        self.dev = dev
        self.pin_no = pin_no
        self.count = 0
        self.flag = compat.flag()
        self.pin = machine.Pin(pin_no, machine.Pin.IN, machine.Pin.PULL_UP)
        self.pin.irq(handler=self._irq, trigger=machine.Pin.IRQ_FALLING | machine.Pin.IRQ_RISING)
        dev.say("button on GPIO%d: press = btnCount, hold %d s = Config mode" % (pin_no, LONG_PRESS_MS // 1000))

    def _irq(self, pin):
        self.flag.set()  # interrupt context: only wake the task

    def pressed(self):
        return self.pin.value() == 0

    async def run(self):
        while True:
            await self.flag.wait()
            await compat.sleep_ms(DEBOUNCE_MS)
            if not self.pressed():
                continue  # a bounce, or the release edge
            t0 = compat.ticks_ms()
            held = 0
            while held < LONG_PRESS_MS:
                await compat.sleep_ms(HOLD_POLL_MS)
                if not self.pressed():
                    await compat.sleep_ms(DEBOUNCE_MS)
                    if not self.pressed():
                        break
                held = compat.ticks_diff(compat.ticks_ms(), t0)
            if held >= LONG_PRESS_MS:
                if await self.long_press():
                    return
            else:
                await self.short_press()

    async def short_press(self):
        dev = self.dev
        self.count += 1
        if not dev.connected or dev.shadow is None:
            dev.say("button: press #%d (offline: reported when online)" % self.count)
            return
        state = dev.shadow.state()
        topic = "devices/%s/events" % dev.thing
        event = {"on": state["on"], "btnCount": self.count, "refresh": state["refresh"],
                 "uptime": compat.ticks_diff(compat.ticks_ms(), dev.started) // 1000,
                 "ts": compat.epoch_ms()}
        free = compat.mem_free()
        if free >= 0:
            event["ram_free"] = free
        dev.say("button: press #%d, publishing to %s" % (self.count, topic))
        try:
            await dev.shadow.report(state)
            await dev.publish(topic, event, qos=0)
        except Exception as exc:
            dev.say("[warning] button press #%d not sent: %s" % (self.count, exc), force=True)

    async def long_press(self):
        """Back to Config mode (reboots); False when the board cannot do BLE."""
        dev = self.dev
        if not dev.board.has_ble:
            dev.say("[warning] button held %d s: %s has no Bluetooth, so no Config mode; staying online"
                    % (LONG_PRESS_MS // 1000, dev.board.chip), force=True)
            return False
        dev.say("[fd] button held %d s: back to Config mode (BLE provisioning)" % (LONG_PRESS_MS // 1000),
                force=True)
        dev.settings.update(config_mode=True)
        if dev.connected and dev.thing:
            await dev._quiet_publish(dev.thing + "/logs", {
                "ts": compat.epoch_ms(), "level": "info", "mode": dev.mode,
                "msg": "button long press: back to Config mode"})
        await dev.reboot("button long press: config mode")
        return True
