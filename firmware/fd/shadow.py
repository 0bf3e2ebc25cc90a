# Classic device shadow: report state, apply the delta, report what was applied.
#
# Keys the device owns in `desired`: on (LED), refresh (telemetry ms, 1000..3600000,
# persisted), reboot (counter: reboot when it increases), firmware_version (+ firmware_url,
# firmware_sha256: OTA). Bad values or unknown keys -> `reported.error` names the problem;
# nothing reboots because of a bad value.
import json

from fd.settings import validate_on, validate_refresh

SETTABLE = ("on", "refresh")
READ_ONLY = ("temperature", "humidity", "error", "chip", "mac", "uptime", "btnCount")
OTA_KEYS = ("firmware_version", "firmware_url", "firmware_sha256")


def apply_settings(dev, changes):
    """Apply `on`/`refresh` from a dict. Returns (applied: dict, errors: list)."""
    applied = {}
    errors = []
    for k in changes:
        v = changes[k]
        if k == "on":
            val, err = validate_on(v)
            if err:
                errors.append(err)
            else:
                dev.board.set_led(val)
                dev.settings.update(on=val)
                applied["on"] = val
                dev.say("LED %s" % ("on" if val else "off"))
        elif k == "refresh":
            val, err = validate_refresh(v)
            if err:
                errors.append(err)
            else:
                dev.settings.update(refresh=val)
                applied["refresh"] = val
                dev.refresh_changed()
        else:
            errors.append("unknown key %r" % (k,))
    return applied, errors


class Shadow:
    def __init__(self, dev):
        self.dev = dev
        self.prefix = "$aws/things/%s/shadow" % dev.thing
        self.last_error = None
        self.last_error_for_ota = None
        self.last_env = None

    def topics(self):
        p = self.prefix
        return [p + "/update/delta", p + "/get/accepted", p + "/get/rejected", p + "/update/rejected"]

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
        await self.dev.publish(self.prefix + "/get", {"clientToken": self.dev.token()}, qos=1)

    async def report(self, reported):
        doc = {"state": {"reported": reported}, "clientToken": self.dev.token()}
        await self.dev.publish(self.prefix + "/update", doc, qos=1)

    async def report_env(self, t, h):
        """Put a DHT11 reading in `reported` when it changed."""
        if self.last_env == (t, h):
            return
        self.last_env = (t, h)
        if self.dev.connected:
            await self.report({"temperature": t, "humidity": h})

    async def handle(self, topic, payload):
        if topic.endswith("/update/delta"):
            try:
                doc = json.loads(payload)
                state = doc["state"]
                if not isinstance(state, dict):
                    raise ValueError("state is not an object")
            except Exception as exc:
                await self.fail("malformed delta: %s" % (exc,))
                return
            await self.apply(state)
        elif topic.endswith("/get/accepted"):
            try:
                delta = json.loads(payload).get("state", {}).get("delta")
            except Exception as exc:
                await self.fail("malformed shadow document: %s" % (exc,))
                return
            if isinstance(delta, dict) and delta:
                await self.apply(delta)
        elif topic.endswith("/rejected"):
            self.dev.log("warning", "shadow request rejected: %s" % payload.decode()[:200])

    async def fail(self, msg):
        self.dev.log("error", msg)
        self.last_error = msg
        await self.report({"error": msg})

    async def apply(self, delta):
        dev = self.dev
        errors = []
        settable = {}
        ota = {}
        reboot_to = None
        for k in delta:
            v = delta[k]
            if k in SETTABLE:
                settable[k] = v
            elif k == "reboot":
                if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                    errors.append("reboot must be a non-negative integer counter, got %r" % (v,))
                elif v > dev.settings["reboot"]:
                    reboot_to = v
                else:  # counter went backwards (e.g. reset shadow): adopt it, no reboot
                    dev.settings.update(reboot=v)
            elif k in OTA_KEYS:
                ota[k] = v
            elif k in READ_ONLY:
                errors.append("%s is reported by the device and cannot be desired" % k)
            else:
                errors.append("unknown key %r" % (k,))
        applied, errs = apply_settings(dev, settable)
        errors.extend(errs)
        if ota:
            err = self.check_ota(ota)
            if err:
                errors.append(err)
            elif ota.get("firmware_version") in (None, dev.settings["firmware_version"]):
                # nothing to install: adopt the URL/hash so the delta clears
                for k in ("firmware_url", "firmware_sha256"):
                    if k in ota:
                        dev.settings.update(**{k: ota[k]})
                        applied[k] = ota[k]
                if "firmware_version" in ota:
                    applied["firmware_version"] = ota["firmware_version"]
        applied["reboot"] = dev.settings["reboot"] if reboot_to is None else reboot_to
        self.last_error = "; ".join(errors) if errors else None
        if errors:
            dev.log("error", "delta: " + self.last_error)
        applied["error"] = self.last_error
        if reboot_to is not None:
            dev.settings.update(reboot=reboot_to)  # persisted first: no reboot loop
        await self.report(applied)
        if reboot_to is not None:
            dev.log("info", "reboot requested by shadow (counter %d)" % reboot_to)
            await dev.reboot("shadow reboot counter")
            return
        if ota and not self.last_error_for_ota:
            await self.start_ota(ota)

    def check_ota(self, ota):
        self.last_error_for_ota = None
        s = self.dev.settings
        version = ota.get("firmware_version")
        if version is None:
            if "firmware_url" in ota or "firmware_sha256" in ota:
                return None  # url/hash alone: remembered for the next version change
            return None
        if not isinstance(version, str) or not version:
            self.last_error_for_ota = "firmware_version must be a non-empty string"
            return self.last_error_for_ota
        if version == s["firmware_version"]:
            return None
        url = ota.get("firmware_url")
        if not url:
            self.last_error_for_ota = "firmware_version %s needs firmware_url in desired" % version
            return self.last_error_for_ota
        key = "%s|%s|%s" % (version, url, ota.get("firmware_sha256"))
        if key in (s.get("ota_failed") or []):
            self.last_error_for_ota = "OTA to %s already failed; change firmware_url or firmware_sha256 to retry" % version
            return self.last_error_for_ota
        return None

    async def start_ota(self, ota):
        version = ota.get("firmware_version")
        if version is None or version == self.dev.settings["firmware_version"]:
            return
        url = ota.get("firmware_url")
        sha = ota.get("firmware_sha256")
        from fd import ota as fdota

        ok, reason = await fdota.update(self.dev, url, sha, version)
        if not ok:
            failed = list(self.dev.settings.get("ota_failed") or [])[-4:]
            failed.append("%s|%s|%s" % (version, url, sha))
            self.dev.settings.update(ota_failed=failed)
            await self.fail("OTA to %s failed: %s" % (version, reason))
            return
        self.dev.settings.update(firmware_url=url, firmware_sha256=sha)
        await self.dev.reboot("OTA to %s" % version)
