# DHT11 telemetry: read every `refresh` ms, publish on dt/<thing>/env, keep readings in a
# bounded ring while offline and send them (oldest first) when the link is back.
import json

from fd import compat

RING = 64


class Telemetry:
    def __init__(self, dev, period_ms=None, ring=RING):
        self.dev = dev
        self.topic = "dt/%s/env" % dev.thing
        self.period_ms = period_ms  # fixed period (simulator); None = settings.refresh
        self.ring = []
        self.ring_max = ring
        self.seq = 0
        self.sent = 0
        self.dropped = 0
        self.read_errors = 0
        self.woken = False
        self.flushing = False

    def period(self):
        return self.period_ms or self.dev.settings["refresh"]

    async def run(self):
        dev = self.dev
        t_next = compat.ticks_ms()
        while True:
            try:
                t, h = dev.board.read_dht()
            except OSError as exc:
                self.read_errors += 1
                if self.read_errors % 10 == 1:
                    dev.log("warning", "DHT11 read failed (%s), %d so far" % (exc, self.read_errors))
            else:
                self.seq += 1
                rec = {"temperature": t, "humidity": h, "ts": compat.epoch_ms(), "seq": self.seq}
                self.ring.append(json.dumps(rec))
                if len(self.ring) > self.ring_max:
                    self.ring.pop(0)
                    self.dropped += 1
                await self.flush()
                try:
                    await dev.shadow.report_env(t, h)
                except OSError:
                    pass
            t_next += self.period()
            wait = compat.ticks_diff(t_next, compat.ticks_ms())
            if wait < 0:  # fell behind (e.g. offline stalls): do not burst to catch up
                t_next = compat.ticks_ms()
                wait = 0
            # sleep in slices so a new refresh period takes effect within a second, without
            # a wait_for() (a task + timer) per reading: cheap enough for 1000s of devices
            self.woken = False
            while wait > 0 and not self.woken:
                step = wait if wait < 1000 else 1000
                await compat.sleep_ms(step)
                wait -= step
            if self.woken:
                t_next = compat.ticks_ms()

    async def flush(self):
        """Send buffered readings, oldest first, while online (one flusher at a time)."""
        if self.flushing:
            return
        self.flushing = True
        try:
            while self.ring and self.dev.connected:
                msg = self.ring[0]
                try:  # QoS 1: a reading leaves the ring only once the broker has it (PUBACK)
                    await self.dev.client.publish(self.topic, msg, qos=1)
                except OSError:
                    return  # kept; sent again when the link is back (the app ignores duplicates)
                if self.ring and self.ring[0] is msg:  # not pushed out by an overflow meanwhile
                    self.ring.pop(0)
                self.sent += 1
        finally:
            self.flushing = False
