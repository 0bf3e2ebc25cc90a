# AWS IoT Jobs over MQTT: notify-next -> start-next -> IN_PROGRESS -> SUCCEEDED | FAILED.
#
# Job documents (templates in resources/jobs/):
#   {"operation": "reboot"}
#   {"operation": "config", "settings": {"refresh": 5000, "on": true}}
#   {"operation": "ota", "url": "https://...", "sha256": "<hex>", "version": "1.1.0"}
# Jobs that need a reboot (reboot, ota) are remembered in settings.json ("pending_job") and
# finished after the device is back, with the outcome in statusDetails (string values).
import json


class Jobs:
    def __init__(self, dev):
        self.dev = dev
        self.prefix = "$aws/things/%s/jobs" % dev.thing
        self.busy = False
        self.done = []

    def topics(self):
        p = self.prefix
        return [p + "/notify-next", p + "/start-next/accepted", p + "/start-next/rejected"]

    async def on_connect(self):
        await self.finish_pending()
        await self.start_next()

    async def start_next(self):
        await self.dev.publish(self.prefix + "/start-next", {"clientToken": self.dev.token()}, qos=1)

    async def update(self, job_id, status, details=None):
        doc = {"status": status, "clientToken": self.dev.token()}
        if details:
            doc["statusDetails"] = dict((k, str(details[k])[:1000]) for k in details)
        await self.dev.publish("%s/%s/update" % (self.prefix, job_id), doc, qos=1)
        self.dev.log("info", "job %s -> %s %s" % (job_id, status, json.dumps(details or {})))

    async def finish_pending(self):
        s = self.dev.settings
        p = s.get("pending_job")
        if not p:
            return
        s.update(pending_job=None)
        job_id = p.get("jobId")
        if p.get("op") == "ota":
            want = p.get("version")
            have = s["firmware_version"]
            if want == have:
                await self.update(job_id, "SUCCEEDED", {"firmware_version": have})
            else:
                await self.update(job_id, "FAILED", {"reason": "booted %s, expected %s" % (have, want)})
        else:
            await self.update(job_id, "SUCCEEDED", {"rebooted": "true", "boots": s["boots"]})
        self.done.append(job_id)

    async def handle(self, topic, payload):
        if topic.endswith("/start-next/rejected"):
            self.dev.log("warning", "start-next rejected: %s" % payload.decode()[:200])
            return
        try:
            doc = json.loads(payload)
        except ValueError:
            self.dev.log("error", "jobs: unreadable message on %s" % topic)
            return
        execution = doc.get("execution") if isinstance(doc, dict) else None
        if topic.endswith("/notify-next"):
            if execution and not self.busy:
                await self.start_next()
            return
        if execution:
            await self.run(execution)

    async def run(self, execution):
        job_id = execution.get("jobId")
        if not job_id or job_id in self.done or self.busy:
            return
        self.busy = True
        try:
            more = await self._run(job_id, execution.get("jobDocument") or {})
        finally:
            self.busy = False
        if more:
            self.done = self.done[-20:] + [job_id]
            await self.start_next()

    async def _run(self, job_id, doc):
        dev = self.dev
        op = doc.get("operation") if isinstance(doc, dict) else None
        dev.log("info", "job %s: %s" % (job_id, op))
        if op == "reboot":
            dev.settings.update(pending_job={"jobId": job_id, "op": "reboot"})
            await self.update(job_id, "IN_PROGRESS", {"step": "rebooting"})
            await dev.reboot("job %s" % job_id)
            return False
        if op == "config":
            from fd.shadow import apply_settings

            changes = doc.get("settings")
            if not isinstance(changes, dict) or not changes:
                await self.update(job_id, "FAILED", {"reason": "config job needs a non-empty 'settings' object"})
                return True
            applied, errors = apply_settings(dev, changes)
            if applied:
                await dev.shadow.report(applied)
            if errors:
                await self.update(job_id, "FAILED", {"reason": "; ".join(errors)})
            else:
                await self.update(job_id, "SUCCEEDED", dict((k, json.dumps(applied[k])) for k in applied))
            return True
        if op == "ota":
            from fd import ota

            url, sha, version = doc.get("url"), doc.get("sha256"), doc.get("version")
            if not (url and sha and version):
                await self.update(job_id, "FAILED", {"reason": "ota job needs url, sha256 and version"})
                return True
            if version == dev.settings["firmware_version"]:
                await self.update(job_id, "SUCCEEDED", {"firmware_version": version, "note": "already installed"})
                return True
            await self.update(job_id, "IN_PROGRESS", {"step": "downloading", "version": version})
            ok, reason = await ota.update(dev, url, sha, version)
            if not ok:
                await self.update(job_id, "FAILED", {"reason": reason, "firmware_version": dev.settings["firmware_version"]})
                return True
            dev.settings.update(pending_job={"jobId": job_id, "op": "ota", "version": version})
            await dev.reboot("OTA job %s" % job_id)
            return False
        await self.update(job_id, "FAILED", {"reason": "unknown operation %r" % (op,)})
        return True
