# The device application: Init -> Config | Normal (-> OTA) | Idle (seed 001).
#
# One Device object holds everything for one board, so the fleet simulator can run many
# in one CPython process (each with its own root directory and board overrides).
import json

from fd import compat
from fd.board import Board
from fd.compat import asyncio
from fd.settings import Config, InitError, Settings
from fd.version import APP, VERSION

INBOX_MAX = 100
LARGE_MESSAGE = 1024  # after handling one this big, collect: the next large block finds room
BACKOFF_MIN_MS = 1000
BACKOFF_MAX_MS = 60000
KEEPALIVE_S = 60


class Reboot(Exception):
    """Raised through the handlers when the device decided to reboot."""


class Device:
    """One board's firmware.

    Args:
        root: directory that stands for the device filesystem "/" ("" = current dir).
        overrides: off-board only: mac (bytes), chip, dht_seed, telemetry_ms, quiet,
            backoff_max_ms, keepalive.
    """

    def __init__(self, root="", overrides=None):
        self.root = root
        self.ov = overrides or {}
        self.quiet = self.ov.get("quiet", False)
        self.started = compat.ticks_ms()
        self.mode = None
        self.board = Board(self.ov)
        self.settings = None
        self.config = None
        self.thing = None
        self.client = None
        self.shadow = None
        self.jobs = None
        self.rpc = None
        self.telemetry = None
        self.button = None
        self.stop_reason = None
        self._stop = asyncio.Event()
        self._inbox = []
        self._inbox_ev = asyncio.Event()
        self._tok = 0
        self._ctx = None

    # ------------------------------------------------------------ helpers
    def path(self, p):
        return compat.join(self.root, p)

    def say(self, msg, force=False):
        if force or not self.quiet:
            print(msg)

    def set_mode(self, mode):
        if mode != self.mode:
            self.say("[fd] mode %s -> %s" % (self.mode or "boot", mode))
            self.mode = mode

    @property
    def connected(self):
        return self.client is not None and self.client.connected

    def token(self):
        self._tok += 1
        return "%s-%d" % (self.board.mac_hex[-6:], self._tok)

    def log(self, level, msg):
        """Console line, and a message on <thing>/logs when online."""
        self.say("[%s] %s" % (level, msg), force=level == "error")
        if self.connected and self.thing:
            rec = {"ts": compat.epoch_ms(), "level": level, "msg": msg, "mode": self.mode}
            asyncio.create_task(self._quiet_publish(self.thing + "/logs", rec))

    async def _quiet_publish(self, topic, obj):
        try:
            await self.publish(topic, obj)
        except Exception:
            pass

    async def publish(self, topic, obj, qos=0):
        if not self.connected:
            from fd.mqtt import MQTTError

            raise MQTTError("offline")
        payload = obj if isinstance(obj, (bytes, str)) else json.dumps(obj)
        await self.client.publish(topic, payload, qos=qos)

    async def reboot(self, reason):
        """Stop everything and return "reset" from run(); raises Reboot to unwind handlers."""
        self.say("[fd] rebooting: %s" % reason, force=True)
        self.stop_reason = "reset"
        self._stop.set()
        raise Reboot(reason)

    def refresh_changed(self):
        if self.telemetry is not None:
            self.telemetry.woken = True

    # ------------------------------------------------------------ modes
    async def run(self):
        """Run until the firmware wants a reset; returns "reset"."""
        try:
            return await self._run()
        except Reboot:
            return "reset"

    async def _run(self):
        self.set_mode("init")
        self.say("%s %s on %s, mac %s" % (APP, VERSION, self.board.chip, self.board.mac_hex))
        try:
            self.settings = Settings(self.path("/settings.json"))
            if self.settings.problem:
                self.say("[warning] " + self.settings.problem, force=True)
            self.settings.update(boots=(self.settings["boots"] or 0) + 1)
            self.config = Config(self)
            if self.config.provisioned or self.config.claim:
                self.config.ca_der()
        except (InitError, OSError, ValueError) as exc:
            from fd.modes import idle

            return await idle(self, "init failed: %s" % (exc,))
        self.say("firmware_version %s, refresh %d ms, reboot counter %d, boot #%d" % (
            self.settings["firmware_version"], self.settings["refresh"], self.settings["reboot"],
            self.settings["boots"]))
        if self.settings.get("config_mode") or not (self.config.provisioned or self.config.claim):
            from fd.modes import config_mode  # lazy: Normal mode never loads BLE code

            return await config_mode(self)
        return await self.normal()

    async def normal(self):
        self.set_mode("normal")
        self.board.set_led(self.settings["on"])
        self.thing = self.config.thing_name
        if self.thing:
            self._features()
        tasks = [asyncio.create_task(self._guard(self._link())),
                 asyncio.create_task(self._guard(self._dispatch()))]
        from fd import button

        self.button = button.start(self)
        if self.button is not None:
            tasks.append(asyncio.create_task(self._guard(self.button.run())))
        try:
            await self._stop.wait()
        finally:  # also when run() itself is cancelled (simulator shutdown)
            for t in tasks + self._feature_tasks:
                t.cancel()
        if self.client is not None:
            await self.client.disconnect()
        return self.stop_reason

    def _features(self):
        from fd.jobs import Jobs
        from fd.shadow import Shadow
        from fd.telemetry import Telemetry

        self.shadow = Shadow(self)
        self.jobs = Jobs(self)
        self.rpc = _LazyRpc(self)
        self.telemetry = Telemetry(self, self.ov.get("telemetry_ms"))
        self._routes = [(self.shadow.prefix, self.shadow), (self.jobs.prefix, self.jobs),
                        (self.rpc.topic, self.rpc)]
        self._feature_tasks = [asyncio.create_task(self._guard(self.telemetry.run()))]

    _feature_tasks = []
    _routes = []

    async def _guard(self, coro):
        try:
            await coro
        except Reboot:
            pass
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.say("[error] task failed: %r" % (exc,), force=True)
            if not self._stop.is_set():
                self.stop_reason = "reset"
                self._stop.set()

    def _on_oversize(self, topic, head, size):
        """A message over the MQTT packet cap (never buffered): jobs fail that job."""
        if self.jobs is not None and topic.startswith(self.jobs.prefix):
            asyncio.create_task(self._guard(self.jobs.oversize(topic, bytes(head), size)))
        else:
            self.log("warning", "dropped a %d-byte message on %s: larger than the board takes" % (size, topic))

    def _skims(self, topic):
        """Shadow documents may lose their long strings when memory is short (fd.jsonskim):
        the firmware never parses a value that long (fd.jsonpick); job documents may not."""
        return self.shadow is not None and topic.startswith(self.shadow.prefix)

    def _on_message(self, topic, payload):
        if len(self._inbox) >= INBOX_MAX:
            self._inbox.pop(0)
        self._inbox.append((topic, payload))
        self._inbox_ev.set()

    async def _dispatch(self):
        while True:
            if not self._inbox:
                self._inbox_ev.clear()
                await self._inbox_ev.wait()
                continue
            topic, payload = self._inbox.pop(0)
            large = len(payload) >= LARGE_MESSAGE
            for prefix, handler in self._routes:
                if topic.startswith(prefix):
                    try:
                        await handler.handle(topic, payload)
                    except Reboot:
                        return
                    except MemoryError:
                        payload = None
                        compat.collect()
                        self.log("error", "handling %s: out of memory (%d bytes free after a collect)"
                                 % (topic, compat.mem_free()))
                    except Exception as exc:
                        self.log("error", "handling %s failed: %r" % (topic, exc))
                    break
            payload = None
            if large:
                compat.collect()

    async def _link(self):
        """Wi-Fi, claim provisioning, MQTT: connect, serve, and reconnect with backoff."""
        from fd import mqtt, wifi

        backoff = BACKOFF_MIN_MS
        bmax = self.ov.get("backoff_max_ms") or self.settings.get("backoff_max_ms") or BACKOFF_MAX_MS
        wcfg = self.config.get("wifi")
        while True:
            problem = None
            if isinstance(wcfg, dict) and wcfg.get("ssid"):
                ok, why = await wifi.connect(self.board.wlan, wcfg["ssid"], wcfg.get("password", ""))
                if not ok:
                    problem = "Wi-Fi %r: %s" % (wcfg["ssid"], why)
            if problem is None and not self.config.provisioned:
                problem = await self._provision()
            if problem is None:
                try:
                    if self._ctx is None:
                        cert, key = self.config.thing_creds()
                        from fd import tls

                        self._ctx = tls.tls_context(self.config.ca_der(), cert, key)
                        del tls, cert, key
                        compat.unload("fd.tls")  # built once per boot: its code can go
                    c = mqtt.MQTTClient(self.thing, self.config.endpoint, self.config.port, self._ctx,
                                        keepalive=self.ov.get("keepalive", KEEPALIVE_S),
                                        on_message=self._on_message, on_oversize=self._on_oversize,
                                        skim=self._skims)
                    await c.connect()
                    self.client = c
                except Exception as exc:
                    problem = "MQTT connect to %s:%s failed: %s" % (self.config.endpoint, self.config.port,
                                                                    exc or exc.__class__.__name__)
            if problem is not None:
                self.say("[warning] %s; retry in %d ms" % (problem, backoff), force=True)
                await compat.sleep_ms(backoff + (compat.ticks_ms() % 7) * backoff // 20)
                backoff = min(backoff * 2, bmax)
                continue
            backoff = BACKOFF_MIN_MS
            await self._online(c)
            while c.connected:
                try:
                    await asyncio.wait_for(c.closed.wait(), 2)
                except asyncio.TimeoutError:
                    if isinstance(wcfg, dict) and wcfg.get("ssid") and not self.board.wlan.isconnected():
                        self.say("[warning] Wi-Fi lost", force=True)
                        await c.disconnect()
            self.say("[warning] connection lost: %s" % (c.error,), force=True)
            await compat.sleep_ms(BACKOFF_MIN_MS)

    async def _online(self, c):
        try:
            granted = await c.subscribe(self.shadow.topics() + self.jobs.topics() + self.rpc.topics())
            if 0x80 in granted:
                self.say("[warning] broker refused some subscriptions: %r" % (granted,), force=True)
            self.log("info", "online as %s (firmware %s)" % (self.thing, self.settings["firmware_version"]))
            _mark_app_valid()
            await self.shadow.on_connect()
            await self.jobs.on_connect()
            await self.telemetry.flush()
        except OSError as exc:
            self.say("[warning] setup after connect failed: %s" % (exc,), force=True)

    async def _provision(self):
        from fd.provision import provision

        try:
            thing = await provision(self)
        except Exception as exc:
            return "provisioning by claim failed: %s" % (exc or exc.__class__.__name__)
        self.log("info", "provisioned by claim as %s" % thing)
        self.thing = thing
        self._features()
        self._ctx = None
        return None


class _LazyRpc:
    """The RPC topic, with fd.rpc loaded for each request and dropped after it (heap)."""

    def __init__(self, dev):
        self.dev = dev
        self.topic = dev.thing + "/rpc"

    def topics(self):
        return [self.topic]

    async def handle(self, topic, payload):
        from fd.rpc import Rpc

        try:
            await Rpc(self.dev).handle(topic, payload)
        finally:
            compat.unload("fd.rpc")  # requests are rare: its code leaves the heap in between


def _mark_app_valid():
    """After an app-partition OTA: online again, so cancel the bootloader's rollback."""
    try:
        import esp32

        esp32.Partition.mark_app_valid_cancel_rollback()
    except Exception:
        pass


def main(root=""):
    """Entry point from main.py: run the device, then reset the board when it asks."""
    dev = Device(root)
    reason = asyncio.run(dev.run())
    if reason == "reset":
        dev.board.reset()

