# Off-board shim of MicroPython's `machine` module (the parts the firmware uses).
import sys
import _air

_pins = {}


class Pin:
    IN = 0
    OUT = 1
    OPEN_DRAIN = 2
    PULL_UP = 1
    PULL_DOWN = 2

    def __init__(self, id, mode=-1, pull=-1, value=None):
        self.id = id
        self.mode = mode
        self._v = 0
        _pins[id] = self
        if value is not None:
            self.value(value)

    def value(self, v=None):
        if v is None:
            return self._v
        v = 1 if v else 0
        if v != self._v:
            self._v = v
        return None

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)

    def __call__(self, v=None):
        return self.value(v)


class Signal:
    def __init__(self, pin, invert=False):
        self.pin = pin
        self.invert = invert

    def value(self, v=None):
        if v is None:
            return self.pin.value() ^ (1 if self.invert else 0)
        self.pin.value((1 if v else 0) ^ (1 if self.invert else 0))


def unique_id():
    return _air.mac()


def freq(f=None):
    return 240000000 if f is None else None


def reset():
    """Off-board reboot: exit with the code the runner restarts on."""
    print("machine.reset()")
    sys.exit(_air.RESET_EXIT_CODE)


def soft_reset():
    reset()


def reset_cause():
    return 1  # PWRON_RESET


def idle():
    pass
