# Classic device shadow: report state, apply the delta, report what was applied.
#
# Keys the device owns in `desired`: on (LED), refresh (telemetry ms, 1000..3600000,
# persisted), reboot (counter: reboot when it increases), firmware_version (+ firmware_url,
# firmware_sha256: OTA). A bad value or unknown key is reported once in `reported.error`
# (naming the value) and the device clears that key from `desired` in the same update
# (desired.<key> = null, which AWS lets a device do): the delta ends at its source, so no
# report -> delta -> report ping-pong can start. Nothing reboots because of a bad value.
#
# shadow/get/accepted is subscribed only around the device's own get: on AWS every get by
# anyone (the app reads 13-14 KB documents) would otherwise be sent to the board as well.

from fd import compat
from fd.compat import asyncio
from fd.settings import show, validate_on, validate_ota, validate_refresh

SETTABLE = ("on", "refresh")
READ_ONLY = ("temperature", "humidity", "error", "chip", "mac", "uptime", "btnCount")
OTA_KEYS = ("firmware_version", "firmware_url", "firmware_sha256")
DELTA_KEYS = SETTABLE + ("reboot",) + OTA_KEYS  # the values a delta's apply() reads; others by name only
REBOOT_MAX = 2 ** 31 - 1
GET_TIMEOUT_MS = 10000


def apply_settings(dev, changes, rejected=None):
    """Apply `on`/`refresh` from a dict. Returns (applied: dict, errors: list); the keys it
    refused go into `rejected` (a dict, key -> None) when given."""
    applied = {}
    errors = []
    for k in changes:
        v = changes[k]
        err = None
        if k == "on":
            val, err = validate_on(v)
            if not err:
                dev.board.set_led(val)
                dev.settings.update(on=val)
                applied["on"] = val
                dev.say("LED %s" % ("on" if val else "off"))
        elif k == "refresh":
            val, err = validate_refresh(v)
            if not err:
                dev.settings.update(refresh=val)
                applied["refresh"] = val
                dev.refresh_changed()
        else:
            err = "unknown key %r" % (k,)
        if err:
            errors.append(err)
            if rejected is not None:
                rejected[k] = None
    return applied, errors


class Shadow:
    def __init__(self, dev):
        self.dev = dev
        self.prefix = "$aws/things/%s/shadow" % dev.thing
        self.last_error = None
        self.last_error_for_ota = None
        self.last_env = None

    _get_token = None
    _got = None

    def topics(self):
        p = self.prefix
        return [p + "/update/delta", p + "/update/rejected"]

    def state(self):
        s = self.dev.settings
        st = {"on": bool(s["on"]), "refresh": s["refresh"], "reboot": s["reboot"],
              "firmware_version": s["firmware_version"], "chip": self.dev.board.chip,
              "error": self.last_error}
        if s.get("firmware_url"):
            st["firmware_url"] = s.get("firmware_url")
            st["firmware_sha256"] = s.get("firmware_sha256")
        if self.last_env:
            st["temperature"], st["humidity"] = self.last_env
        if self.dev.button is not None:
            st["btnCount"] = self.dev.button.count
        return st

    async def on_connect(self):
        await self.report(self.state())
        asyncio.create_task(self.get())

    async def get(self):
        """Ask for the shadow (its delta is applied), subscribed to the answer only meanwhile."""
        c = self.dev.client
        p = self.prefix
        answers = [p + "/get/accepted", p + "/get/rejected"]
        self._got = asyncio.Event()
        try:
            await c.subscribe(answers)
            self._get_token = self.dev.token()
            await self.dev.publish(p + "/get", {"clientToken": self._get_token}, qos=1)
            try:
                await asyncio.wait_for(self._got.wait(), GET_TIMEOUT_MS / 1000)
            except asyncio.TimeoutError:
                self.dev.log("warning", "no answer to shadow/get within %d ms" % GET_TIMEOUT_MS)
        except OSError as exc:
            self.dev.say("[warning] shadow get failed: %s" % (exc,), force=True)
        finally:
            self._get_token = None
            if c.connected:
                try:
                    await c.unsubscribe(answers)
                except OSError:
                    pass

    async def report(self, reported, desired=None):
        """Update `reported` (and `desired`, only ever to clear keys the device refused)."""
        state = {"reported": reported}
        if desired:
            state["desired"] = desired
        doc = {"state": state, "clientToken": self.dev.token()}
        await self.dev.publish(self.prefix + "/update", doc, qos=1)

    async def report_env(self, t, h):
        """Put a DHT11 reading in `reported` when it changed."""
        if self.last_env == (t, h):
            return
        self.last_env = (t, h)
        if self.dev.connected:
            await self.report({"temperature": t, "humidity": h})

    def _mine(self, token):
        """A get answer for this device's own request (others' arrive while subscribed)."""
        return self._get_token is not None and token == self._get_token

    async def handle(self, topic, payload):
        # documents are picked, not parsed whole (fd.jsonpick): a 13-14 KB get answer or an
        # 8 KB delta only costs the packet it arrived in; the picker is loaded for it only
        if isinstance(payload, str):
            payload = payload.encode()
        try:
            await self._handle(topic, payload)
        finally:
            compat.unload("fd.jsonpick")

    async def _handle(self, topic, payload):
        from fd import jsonpick

        if topic.endswith("/get/accepted") or topic.endswith("/get/rejected"):
            try:
                items = jsonpick.members(payload)
                at = jsonpick.find(items, "clientToken")
                token = jsonpick.value(payload, at[0], at[1]) if at else None
            except Exception as exc:
                await self.fail("malformed shadow document: %s" % (exc,))
                return
            if not self._mine(token):
                return
            self._got.set()
            if topic.endswith("/get/rejected"):
                self.dev.log("warning", "shadow get rejected: %s" % compat.text(payload))
                return
            try:
                delta = _delta_of(jsonpick, payload, items)
            except Exception as exc:
                await self.fail("malformed shadow document: %s" % (exc,))
                return
            del items, payload, jsonpick
            if delta:
                await self.apply(delta)
            return
        if topic.endswith("/update/delta"):
            try:
                at = jsonpick.find(jsonpick.members(payload), "state")
                if at is None:
                    raise ValueError("no state")
                if payload[at[0]] != 123:
                    raise ValueError("state is not an object")
                state = jsonpick.pick(payload, DELTA_KEYS, at[0], at[1])
            except MemoryError:
                await self.fail("a delta of %d bytes does not fit the board's memory" % len(payload))
                return
            except Exception as exc:
                await self.fail("malformed delta: %s" % (exc,))
                return
            del payload, jsonpick
            await self.apply(state)
        elif topic.endswith("/rejected"):
            self.dev.log("warning", "shadow request rejected: %s" % compat.text(payload))

    async def fail(self, msg):
        self.dev.log("error", msg)
        self.last_error = msg
        await self.report({"error": msg})

    async def apply(self, delta):
        dev = self.dev
        errors = []
        rejected = {}  # desired keys the device clears (set to null) in the same update
        settable = {}
        ota = {}
        reboot_to = None
        for k in delta:
            v = delta[k]
            if k in SETTABLE:
                settable[k] = v
            elif k == "reboot":
                if isinstance(v, bool) or not isinstance(v, int) or v < 0 or v > REBOOT_MAX:
                    errors.append("reboot must be an integer counter 0..%d, got %s" % (REBOOT_MAX, show(v)))
                    rejected[k] = None
                elif v > dev.settings["reboot"]:
                    reboot_to = v
                else:  # counter went backwards (e.g. reset shadow): adopt it, no reboot
                    dev.settings.update(reboot=v)
            elif k in OTA_KEYS:
                ota[k] = v
            elif k in READ_ONLY:
                errors.append("%s is reported by the device and cannot be desired" % k)
                rejected[k] = None
            else:
                errors.append("unknown key %r" % (k,))
                rejected[k] = None
        applied, errs = apply_settings(dev, settable, rejected)
        errors.extend(errs)
        start = None
        if ota:
            start = self.check_ota(ota, errors, rejected, applied)
        applied["reboot"] = dev.settings["reboot"] if reboot_to is None else reboot_to
        self.last_error = "; ".join(errors) if errors else None
        if errors:
            dev.log("error", "delta: " + self.last_error)
        applied["error"] = self.last_error
        if reboot_to is not None:
            dev.settings.update(reboot=reboot_to)  # persisted first: no reboot loop
        await self.report(applied, rejected)
        if reboot_to is not None:
            dev.log("info", "reboot requested by shadow (counter %d)" % reboot_to)
            await dev.reboot("shadow reboot counter")
            return
        if start is not None:
            await self.start_ota(*start)

    def check_ota(self, ota, errors, rejected, applied):
        """Validate the OTA keys of a delta. Returns (version, url, sha) to install, or None;
        refused keys go to errors/rejected, values to adopt to applied (and settings)."""
        s = self.dev.settings
        have = {"firmware_url": s.get("firmware_url"), "firmware_sha256": s.get("firmware_sha256")}
        for k in ("firmware_url", "firmware_sha256"):
            if k in ota:
                err = validate_ota(k, ota[k])
                if err:
                    errors.append(err)
                    rejected[k] = None
                else:
                    have[k] = ota[k]
        version = ota.get("firmware_version")
        if "firmware_version" not in ota or version == s["firmware_version"]:
            # nothing to install: adopt the URL/hash so the delta clears
            for k in ("firmware_url", "firmware_sha256"):
                if k in ota and k not in rejected:
                    s.update(**{k: ota[k]})
                    applied[k] = ota[k]
            if "firmware_version" in ota:
                applied["firmware_version"] = version
            return None
        err = validate_ota("firmware_version", version)
        if err is None and not have["firmware_url"]:
            err = "firmware_version %s needs a valid firmware_url in desired" % version
        if err is None and not have["firmware_sha256"]:
            err = "firmware_version %s needs firmware_sha256 (64 hex characters) in desired" % version
        if err is None and _ota_key(version, have["firmware_url"], have["firmware_sha256"]) in (s.get("ota_failed") or []):
            err = "OTA to %s already failed; change firmware_url or firmware_sha256 to retry" % version
        if err:
            errors.append(err)
            rejected["firmware_version"] = None
            return None
        return version, have["firmware_url"], have["firmware_sha256"]

    async def start_ota(self, version, url, sha):
        from fd import ota as fdota

        ok, reason = await fdota.update(self.dev, url, sha, version)
        if not ok:
            failed = list(self.dev.settings.get("ota_failed") or [])[-4:]
            failed.append(_ota_key(version, url, sha))
            self.dev.settings.update(ota_failed=failed)
            msg = "OTA to %s failed: %s" % (version, reason)
            self.dev.log("error", msg)
            self.last_error = msg
            await self.report({"error": msg}, {"firmware_version": None})  # ends here: no retry loop
            return
        self.dev.settings.update(firmware_url=url, firmware_sha256=sha)
        await self.dev.reboot("OTA to %s" % version)


def _delta_of(jsonpick, doc, items):
    """state.delta of a get document (its keys the device reads, parsed), or None."""
    at = jsonpick.find(items, "state")
    if at is None or doc[at[0]] != 123:
        return None
    at = jsonpick.find(jsonpick.members(doc, at[0], at[1]), "delta")
    if at is None or doc[at[0]] != 123:
        return None
    return jsonpick.pick(doc, DELTA_KEYS, at[0], at[1])


def _ota_key(version, url, sha):
    """A short fixed-size key for settings.ota_failed (settings.json stays small)."""
    return compat.hexdigest(compat.sha256_hex(("%s|%s|%s" % (version, url, sha)).encode()))[:16]
