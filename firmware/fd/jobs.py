# AWS IoT Jobs over MQTT: notify-next -> start-next -> IN_PROGRESS -> SUCCEEDED | FAILED.
#
# Job documents (templates in resources/jobs/):
#   {"operation": "reboot"}
#   {"operation": "config", "settings": {"refresh": 5000, "on": true}}
#   {"operation": "ota", "url": "https://...", "sha256": "<hex>", "version": "1.1.0"}
# Jobs that need a reboot (reboot, ota) are remembered in settings.json ("pending_job") and
# finished after the device is back, with the outcome in statusDetails (string values).
# A job the board cannot parse or run (not an object, wrong types, too large for the
# board's MQTT packet cap, out of memory) is marked FAILED with the reason and the next job
# is asked for: one bad job never blocks the queue.
import json

from fd import compat

ID_MAX = 64


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
            self.dev.log("warning", "start-next rejected: %s" % compat.text(payload))
            return
        try:
            doc = compat.loads(payload)
        except ValueError:
            self.dev.log("error", "jobs: unreadable message on %s" % topic)
            return
        execution = doc.get("execution") if isinstance(doc, dict) else None
        if topic.endswith("/notify-next"):
            if execution and not self.busy:
                await self.start_next()
            return
        if isinstance(execution, dict):
            await self.run(execution)

    async def oversize(self, topic, head, size):
        """A jobs message too large for the board: fail that job (its id is near the start)."""
        if not topic.endswith("/start-next/accepted"):
            if topic.endswith("/notify-next") and not self.busy:
                await self.start_next()
            return
        job_id = _job_id(bytes(head))
        if job_id is None:
            self.dev.log("error", "jobs: a %d-byte job the board cannot read (no jobId in its first bytes)" % size)
            return
        await self.update(job_id, "FAILED", {"reason": "job document of %d bytes is larger than the board's "
                                             "%d-byte message limit" % (size, self.dev.client.max_packet)})
        self.done = self.done[-20:] + [job_id]
        await self.start_next()

    async def run(self, execution):
        job_id = execution.get("jobId")
        if not isinstance(job_id, str) or not job_id or len(job_id) > ID_MAX or job_id in self.done or self.busy:
            return
        self.busy = True
        try:
            try:
                more = await self._run(job_id, execution.get("jobDocument"))
            except MemoryError:
                compat.collect()
                more = await self._failed(job_id, "out of memory running the job (GC heap free %d bytes)"
                                          % compat.mem_free())
            except (TypeError, ValueError, KeyError, AttributeError, IndexError) as exc:
                more = await self._failed(job_id, "the board cannot run this job document: %r" % (exc,))
        finally:
            self.busy = False
        if more:
            self.done = self.done[-20:] + [job_id]
            await self.start_next()

    async def _failed(self, job_id, reason):
        await self.update(job_id, "FAILED", {"reason": reason})
        return True

    async def _run(self, job_id, doc):
        dev = self.dev
        if not isinstance(doc, dict):
            return await self._failed(job_id, "the job document must be a JSON object, got %s" % _kind(doc))
        op = doc.get("operation")
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

            from fd.settings import validate_ota

            url, sha, version = doc.get("url"), doc.get("sha256"), doc.get("version")
            if not (url and sha and version):
                await self.update(job_id, "FAILED", {"reason": "ota job needs url, sha256 and version"})
                return True
            bad = (validate_ota("firmware_url", url) or validate_ota("firmware_sha256", sha)
                   or validate_ota("firmware_version", version))
            if bad:
                return await self._failed(job_id, "ota job: " + bad.replace("firmware_url", "url")
                                          .replace("firmware_sha256", "sha256").replace("firmware_version", "version"))
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
        await self.update(job_id, "FAILED", {"reason": "unknown operation %s (reboot, config or ota)" % _kind(op)})
        return True


def _kind(v):
    from fd.settings import show

    return show(v)


def _job_id(head):
    """The jobId in the first bytes of a start-next answer, or None."""
    i = head.find(b'"jobId"')
    if i < 0:
        return None
    i = head.find(b'"', head.find(b":", i) + 1)
    j = head.find(b'"', i + 1)
    if i < 0 or j < 0 or j - i - 1 > ID_MAX:
        return None
    return head[i + 1:j].decode()
