# Off-board shim of MicroPython's `machine` module (the parts the firmware uses).
#
# Input pins: Pin.value() of a Pin.IN reads the level the virtual board drives (its pull
# level until then); Pin.irq() handlers fire on the edges. The levels come from the host
# over a TCP line channel at $FD_GPIO ("127.0.0.1:PORT", served by
# fleetdesk/virtual/runtime.py): one JSON object per line, {"pin": N, "level": 0|1}; the
# host sends every level it holds when the firmware connects. Without $FD_GPIO nothing
# drives the inputs (a board with nothing wired to its buttons).
import sys
import json
import _air

_pins = {}
_levels = {}  # pin id -> level driven by the virtual board
_link = None  # the asyncio task reading $FD_GPIO (False: no channel)


class Pin:
    IN = 0
    OUT = 1
    OPEN_DRAIN = 2
    PULL_UP = 1
    PULL_DOWN = 2
    IRQ_RISING = 1  # as on the ESP32 port
    IRQ_FALLING = 2

    def __init__(self, id, mode=-1, pull=-1, value=None):
        self.id = id
        self.mode = mode
        self.pull = pull
        self._v = 0
        self._irq = None
        _pins[id] = self
        if value is not None:
            self.value(value)

    def _input(self):
        lv = _levels.get(self.id)
        if lv is None:
            return 1 if self.pull == Pin.PULL_UP else 0
        return lv

    def irq(self, handler=None, trigger=3, hard=False):
        """Call handler(pin) on the edges in `trigger` (from the asyncio loop, like a soft IRQ)."""
        self._irq = (handler, trigger) if handler is not None else None
        _start_link()

    def value(self, v=None):
        if v is None:
            if self.mode == Pin.IN:
                return self._input()
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


def _drive(pin_id, level):
    """The virtual board set input `pin_id` to `level`: fire the irq on a matching edge."""
    p = _pins.get(pin_id)
    before = p._input() if p is not None else _levels.get(pin_id)
    _levels[pin_id] = level
    if p is None or p._irq is None or before == level:
        return
    handler, trigger = p._irq
    if trigger & (Pin.IRQ_RISING if level else Pin.IRQ_FALLING):
        try:
            handler(p)
        except Exception as exc:
            print("irq handler failed: %r" % (exc,))


def _start_link():
    global _link
    if _link is not None:
        return
    addr = _air.env("FD_GPIO")
    if not addr:
        _link = False
        return
    try:
        import asyncio

        _link = asyncio.create_task(_gpio_link(addr))
    except RuntimeError:  # CPython without a running loop: try again at the next irq()
        _link = None


async def _gpio_link(addr):
    import asyncio

    host, port = addr.rsplit(":", 1)
    while True:
        try:
            reader, writer = await asyncio.open_connection(host, int(port))
            while True:
                line = await reader.readline()
                if not line:
                    break
                msg = json.loads(line)
                _drive(int(msg["pin"]), 1 if msg["level"] else 0)
            writer.close()
        except Exception:
            pass
        await asyncio.sleep(0.5)  # the host went away (or is not up yet): try again


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
