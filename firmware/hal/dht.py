# Off-board DHT11/DHT22 simulation with the real driver's interface.
#
# DHT11 behaviour: whole degrees C and whole %RH, a slow drift around a per-board base, and
# an occasional failed read (OSError ETIMEDOUT, as the real driver raises).
import _air

ETIMEDOUT = 110


class _Rng:
    # xorshift32: same numbers under MicroPython and CPython, one per sensor.
    def __init__(self, seed):
        self.s = (seed & 0xFFFFFFFF) or 0x9E3779B9

    def next(self):
        x = self.s
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self.s = x
        return x

    def unit(self):
        return self.next() / 4294967296.0


class DHTBase:
    ERROR_RATE = 0.02
    STEP = 1.0

    def __init__(self, pin):
        self.pin = pin
        seed = _air.env("FD_DHT_SEED")
        if seed is None:
            m = _air.mac()
            seed = (m[2] << 24) | (m[3] << 16) | (m[4] << 8) | m[5]
        self.reseed(int(seed))

    def reseed(self, seed):
        """Off-board only: give this sensor its own stream of readings."""
        self._rng = _Rng(seed)
        self._t = 18.0 + 8.0 * self._rng.unit()
        self._h = 35.0 + 25.0 * self._rng.unit()
        self._vt = 0.0
        self._vh = 0.0
        self._ok = False

    def measure(self):
        r = self._rng
        if r.unit() < self.ERROR_RATE:
            self._ok = False
            raise OSError(ETIMEDOUT)
        # slow random walk with a gentle pull back towards a comfortable range
        self._vt = 0.9 * self._vt + 0.02 * (r.unit() - 0.5) - 0.001 * (self._t - 22.0)
        self._vh = 0.9 * self._vh + 0.05 * (r.unit() - 0.5) - 0.001 * (self._h - 45.0)
        self._t = min(50.0, max(0.0, self._t + self._vt))
        self._h = min(90.0, max(20.0, self._h + self._vh))
        self._ok = True

    def _check(self):
        if not self._ok:
            raise OSError(ETIMEDOUT)


class DHT11(DHTBase):
    def temperature(self):
        self._check()
        return int(self._t + 0.5)

    def humidity(self):
        self._check()
        return int(self._h + 0.5)


class DHT22(DHTBase):
    def temperature(self):
        self._check()
        return int(self._t * 10 + 0.5) / 10

    def humidity(self):
        self._check()
        return int(self._h * 10 + 0.5) / 10
