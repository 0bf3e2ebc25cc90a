"""The factory station pipeline: detect -> identity -> write -> verify -> boot -> online.

One `BoardPipeline` per board, each in its own thread driving one esptool worker process.
Every step is journaled in the production DB; the attempt row is written once, at the end
(PASS or FAIL), so a crash never leaves a half-written row. On FAIL after the identity was
minted, the new certificate is set INACTIVE (never left ACTIVE for a board that never came
online). `Station.recover()` does the same for runs a crash interrupted.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Callable

from fleetdesk.boards.advice import advise
from fleetdesk.boards.console import ConsoleReader
from fleetdesk.boards.errors import StageFailed
from fleetdesk.boards.events import BoardEvent, WorkerEvent, board_event
from fleetdesk.boards.identity_mode import IdentityMode, identity_mode
from fleetdesk.boards.pipeline_context import PipelineContext
from fleetdesk.boards.pipeline_identity import IdentitySteps
from fleetdesk.boards.ports import location_of, port_reappeared_at
from fleetdesk.errors import BoardError, FleetdeskError

if TYPE_CHECKING:
    from fleetdesk.config import Profile

REENUMERATION_WINDOW = 5.0  # s to wait for a board's port to come back at the same USB location
STAGES = ("detect", "identity", "write", "verify", "boot", "online")


@dataclass
class StationSettings:
    """What the operator locks in before pressing START (see the Stations page)."""

    bundle: str = ""
    baud: int = 460800
    identity: bool = True
    name_template: str = "fd-{mac}"
    operator: str = ""
    station: str = ""
    product: str | None = None
    sandbox_state_dir: str | None = None
    profile: Profile | None = None  # a fleetdesk.config.Profile (sandbox or aws); None = the sandbox at sandbox_state_dir
    online_timeout: float = 60.0
    wait_online: bool = True
    allowed_usb: list = field(default_factory=list)
    wifi: dict | None = field(default=None, repr=False)  # holds the Wi-Fi password
    db_path: str | None = None
    factory_reset: bool = False  # mint a new identity even when the board's is on file
    restore_identity: bool = False  # write the identity on file back (board erased or replaced flash)
    repurpose: bool = False  # operator confirmed: overwrite another product's identity
    offline_pool: bool = False  # identities from the pre-minted certificate pool (works offline)
    pool_share: int = 0  # a line station keeps this many of the line's pool certificates ahead (for an outage)
    claim: bool = False  # write the claim certificate: the board provisions itself by claim at first boot
    claim_template: str = ""  # the fleet-provisioning template the board names when claiming
    line_ca: bool = False  # sign each board's certificate with the line's CA here (JITP; no AWS credentials)
    line_ca_dir: str | None = None  # the line CA's folder (default: <data dir>/line-ca)
    boot_wait: float = 1.0  # seconds the booted firmware is watched when not waiting for presence
    boot_timeout: float = 30.0  # seconds for the firmware's own boot line after the flash (no line: FAIL)


@dataclass
class BoardResult:
    """One board's outcome, as printed by the CLI and shown on a tile."""

    port: str
    result: str = "FAIL"
    stage: str = ""
    chip: str | None = None
    mac: str | None = None
    thing: str | None = None
    certificate_id: str | None = None
    error: str = ""
    advice: str = ""
    advice_code: str = ""
    duration_s: float = 0.0
    reflash: bool = False
    baud_fallback: bool = False
    console_tail: list = field(default_factory=list)
    esptool_tail: list = field(default_factory=list)
    attempt_id: int | None = None
    run_id: str | None = None
    pending_sync: bool = False  # offline pool flash: the thing is registered at the next sync
    presence: str = ""  # how "online" was established: cloud presence, or the console fallback (and why)
    identity_on_file: bool = False  # the production DB knows this MAC's identity (restore offered)
    backup_id: int | None = None  # identity backup read from the board before this write replaced it
    restored: bool = False  # the identity on file was written back (--restore-identity)
    followed: str = ""  # "followed re-enumeration: A -> B" when the board changed port mid-job
    board_identity: dict = field(default_factory=dict)  # what the board carried (vfsprobe summary, no keys)
    restore_offered: bool = False  # stopped before writing: the identity on file is missing on the board

    def to_json(self) -> dict:
        return asdict(self)

    def notes(self) -> list[str]:
        """What else the operator should know about this result (the CLI and the tile show them)."""
        return [text for text, on in (
            ("re-flash", self.reflash), ("identity restored", self.restored),
            (f"identity backed up: #{self.backup_id}", self.backup_id),
            ("fell back to 115200 baud", self.baud_fallback),
            ("offline: registry sync pending", self.pending_sync), (self.followed, self.followed),
            (self.presence, self.presence.startswith("boot seen on the console"))) if on]

    def summary(self) -> str:
        """The result in one line, as the station tile shows it: what happened and what to do."""
        if self.result == "PASS":
            return " · ".join([f"{self.thing} online" if self.thing else "flashed and verified", *self.notes()])
        if self.error.startswith("cancelled by the operator"):  # a STOP is not a failed board
            return "stopped by the operator" + (f" during {self.stage}" if self.stage else "")
        return self.advice or self.error  # a restore offer's advice is its question


class BoardPipeline(IdentitySteps):
    """Flash one board, end to end, in the calling thread.

    Args:
        port: serial URL.
        plan: the loaded FlashPlan.
        settings: station settings.
        db: ProductionDB.
        cloud: CloudTarget (None without identity).
        on_event: ``fn(port, BoardEvent)`` (``fleetdesk.boards.events``): stage, progress, log,
            chip facts, the online countdown, the result.
    """

    def __init__(self, port, plan, settings: StationSettings, db, cloud=None, on_event=None, slot: str = "",
                 pool=None, device_target=None) -> None:
        self.port, self.plan, self.settings, self.db, self.cloud = port, plan, settings, db, cloud
        self.pool, self._pooled, self.offline = pool, None, False
        self.mode = identity_mode(settings, check=False)  # where this board's identity comes from
        self._device_target = device_target or cloud
        self.slot = slot
        self._emit = on_event or (lambda port, ev: None)
        self._job = None
        self._cancel = threading.Event()
        self._verifying = False
        self._stopped_at = ""  # the step the operator stopped the board in (journaled as failed there)
        self.result = BoardResult(port)
        self._minted = None
        self._ahead = None  # a certificate minted ahead for a board the station does not know yet
        self._board = None  # what the board carried (fleetdesk.boards.vfsprobe.BoardIdentity)
        self._run_id: str | None = None
        self._trace: list[str] = []
        self._last_written = False
        self.ctx = PipelineContext(settings, plan, db, cloud, self.result, self._journal, self._event, self._cancel)

    def cancel(self) -> None:
        """STOP: the board stops in the step it is in; no later step is begun."""
        if not self._cancel.is_set():
            self._stopped_at = self.result.stage if self.result.stage in STAGES else "detect"
        self._cancel.set()
        if self._job is not None:
            self._job.cancel()

    def _event(self, **fields) -> None:
        """Report a :class:`BoardEvent` (its fields by name) to the tile/CLI."""
        ev = BoardEvent(**fields)
        if ev.stage is not None:
            self.result.stage = ev.stage
        self._emit(self.port, ev)

    def _journal(self, step, status, detail="", **fields) -> None:
        if (status == "begin" and self._cancel.is_set() and step in STAGES
                and STAGES.index(step) > STAGES.index(self._stopped_at)):
            return  # stopped: a later step is never begun
        if self._run_id:
            self.db.step(self._run_id, step, status, detail, **fields)

    def _on_worker_event(self, wev: WorkerEvent) -> None:
        ev = board_event(wev)
        if ev is None:
            return
        if ev.stage == "verify" and not self._verifying:  # esptool verifies part by part: journal once
            self._verifying = True
            self._journal("write", "done")
            self._journal("verify", "begin")
        if ev.info is not None:
            self.result.chip, self.result.mac = ev.chip, ev.mac
        if ev.stage is not None:
            self.result.stage = ev.stage
        self._emit(self.port, ev)

    def run(self) -> BoardResult:
        from fleetdesk.boards.flasher import FlashJob

        started = time.monotonic()
        r = self.result
        self._run_id = self.db.start_run(station=self.settings.station, port=self.port, slot=self.slot)
        r.run_id = self._run_id
        self._event(stage="detect", state="running", percent=0)
        self._journal("detect", "begin")
        console = None
        try:
            location = location_of(self.port)
            wr = self._flash_job(FlashJob)
            if (not wr.ok and not r.mac and not wr.written and wr.kind not in ("prepare", "cancelled")
                    and location and not self._cancel.is_set()):
                # a native-USB chip (USB-Serial/JTAG) resets into the ROM under another port name
                new_port = port_reappeared_at(location, self.port, REENUMERATION_WINDOW, self._cancel)
                if new_port:
                    old_port, first = self.port, wr
                    r.followed = f"followed re-enumeration: {old_port} -> {new_port}"
                    self._journal("detect", "reenumerated", {"from": old_port, "to": new_port,
                                                             "location": location, "error": wr.error})
                    self.port = r.port = new_port
                    self._event(log=r.followed)
                    wr = self._flash_job(FlashJob)
                    wr.trace = first.trace + [f"--- {r.followed} ---"] + wr.trace
            self._trace = wr.trace
            self._last_written = wr.written
            r.baud_fallback = wr.baud_fallback
            r.esptool_tail = (wr.last_lines or wr.trace)[-20:]
            if not wr.ok:
                step = "identity" if wr.kind == "prepare" and self.settings.identity and self._minted is None else \
                    ("detect" if not r.mac else ("write" if wr.written else "detect"))
                if wr.kind == "prepare" and self._minted is not None:
                    step = "write"
                raise StageFailed(step, wr.error or wr.kind, wr.kind)
            self._stop_if_cancelled("verify")  # the job ended before it saw the STOP
            self._journal("verify", "done")
            flashed_at = time.time()
            self._event(stage="boot")
            self._journal("boot", "begin")
            waiting = self.settings.identity and self.settings.wait_online
            if self.pool is not None and not self._sync_pool():
                self.offline, waiting = True, False  # PASS now, the registry follows at the next sync
            console = ConsoleReader(self.port)  # PASS needs the firmware's boot line from it
            self._stop_if_cancelled("online")
            if waiting:
                self._event(stage="online")
                self._journal("online", "begin")
                if self.mode is IdentityMode.CLAIM:  # the board provisions itself by claim first (boards/claim.py)
                    from fleetdesk.boards.claim import wait_claim_online

                    wait_claim_online(self.ctx, flashed_at, console)
                elif self.mode is IdentityMode.LINE_CA and self.cloud is None:
                    self._wait_jitp_online(console)
                else:
                    self._wait_online(flashed_at, console)
                self._wait_booted(console)  # online, and it is this firmware that booted
                self._journal("online", "done")
            else:
                self._wait_booted(console)
                self._cancel.wait(self.settings.boot_wait)  # then watch it run a moment
                self._stop_if_cancelled("online")
                self._check_boot(console)
            r.result = "PASS"
            r.pending_sync = self.offline
        except StageFailed as f:
            r.error = f.reason
            self._journal(self._stopped_at if self._cancel.is_set() else f.step, "failed", f.reason)
        except FleetdeskError as exc:
            r.error = str(exc)  # message and its advice (the tile's line comes from both)
            self._journal(self._stopped_at if self._cancel.is_set() else (r.stage or "detect"), "failed", exc.message)
        except Exception as exc:  # noqa: BLE001 - a pipeline bug still ends in a FAIL row
            r.error = f"{type(exc).__name__}: {exc}"
            self._journal(self._stopped_at if self._cancel.is_set() else (r.stage or "detect"), "failed", r.error)
        finally:
            if console is not None:
                r.console_tail = console.stop()[-20:]
        if r.result != "PASS":
            if self._cancel.is_set() and "cancel" not in r.error:
                r.error = f"cancelled by the operator ({r.error})"
            adv = advise(r.error)
            r.advice, r.advice_code = adv.line(), adv.code
            self._event(log=f"FAIL: {r.error}")  # the full reason, for the tile's details
            self._rollback()
        elif r.baud_fallback:
            adv = advise("falling back to 115200")
            r.advice, r.advice_code = adv.line(), adv.code
        r.duration_s = round(time.monotonic() - started, 2)
        known = self.db.device(r.mac) if r.mac else None
        r.reflash = bool(known)
        if r.result == "PASS" and known and known.certificate_id and r.certificate_id \
                and known.certificate_id != r.certificate_id and self.cloud is not None:
            # the board uses its new certificate: retire the old one, before the row (never left ACTIVE)
            self._retire(known.certificate_id)
        r.attempt_id = self.db.finish(self._run_id, {
            "station": self.settings.station, "port": self.port, "slot": self.slot, "operator": self.settings.operator,
            "chip": r.chip, "mac": r.mac, "bundle_sha256": self.plan.sha256, "thing": r.thing,
            "certificate_id": r.certificate_id, "result": r.result, "duration_s": r.duration_s,
            "error": r.error or None, "baud": 115200 if r.baud_fallback else self.settings.baud,
            "product": self.settings.product})
        try:
            self.db.save_logs(self._run_id, console=r.console_tail, esptool=list(self._trace))
        except Exception:  # noqa: BLE001 - logs are a convenience; the attempt row is written
            pass
        self._event(stage="done", state=r.result, percent=100 if r.result == "PASS" else None, result=r.to_json())
        return r

    def _check_boot(self, console) -> None:
        """Fail now when the latest boot says the firmware did not start or stopped (boards/bootcheck.py)."""
        from fleetdesk.boards.bootcheck import not_started

        if console is None:
            return
        line = console.reset_by or not_started(list(console.boot_head)) or not_started(list(console.lines))
        if line:
            raise StageFailed("boot", f"the board does not boot the new firmware (console: {line})", "boot")

    def _wait_booted(self, console) -> None:
        """PASS needs the firmware's own evidence: its boot line in the latest boot, within
        ``boot_timeout``; a boot that fails meanwhile ends the wait at once."""
        from fleetdesk.boards.bootcheck import booted_line

        timeout = self.settings.boot_timeout
        deadline = time.monotonic() + timeout
        while True:
            self._check_boot(console)
            line = booted_line(list(console.boot_head)) if console is not None else None
            if line:
                self._journal("boot", "done", line)
                return
            if time.monotonic() >= deadline:
                last = next((t.strip() for t in reversed(list(console.lines)) if t.strip()), "") if console else ""
                raise StageFailed("boot", "the board does not boot the new firmware (its firmware never printed its "
                                      f"boot line within {timeout:.0f} s of the flash; last console line: {last or 'none'})", "boot")
            if self._cancel.wait(0.1):
                self._stop_if_cancelled("online")
                raise StageFailed("boot", "cancelled by the operator", "cancelled")

    def _stop_if_cancelled(self, step: str) -> None:
        """After a STOP in ``step`` or earlier, end here (as cancelled in the step it was pressed in)."""
        if self._cancel.is_set() and STAGES.index(self._stopped_at) <= STAGES.index(step):
            raise StageFailed(self._stopped_at, "cancelled by the operator", "cancelled")

    def _flash_job(self, job_cls):
        self._job = job_cls(self.port, self.plan, baud=self.settings.baud, on_event=self._on_worker_event,
                            prepare=self._prepare, probe_identity=True)
        if self._cancel.is_set():
            self._job.cancel()
        return self._job.run()

    def _wait_online(self, flashed_at: float, console: "ConsoleReader | None" = None) -> None:
        from fleetdesk.cloud.backend import NotOnline, PresenceUnavailable, WaitCancelled

        deadline = time.monotonic() + self.settings.online_timeout
        thing = self.result.thing

        def check() -> None:  # every poll: a crash on boot or an unplugged board fails now
            self._check_boot(console)
            if console is not None and console.lost:
                raise StageFailed("online", f"the board was unplugged while waiting for {thing} to come online "
                                        "(its port went away)", "unplugged")
            self._event(waiting_s=max(0, int(deadline - time.monotonic())))  # the tile's countdown

        try:
            self.cloud.wait_online(thing, self.settings.online_timeout, since=flashed_at, cancel=self._cancel,
                                   check=check)
        except PresenceUnavailable as exc:
            return self._wait_console_online(console, deadline, exc.message)
        except WaitCancelled:
            raise StageFailed("online", "cancelled by the operator", "cancelled") from None
        except NotOnline as exc:
            c = exc.last
            seen = "never seen" if not c.get("timestamp") else (
                f"last seen {'connected' if c.get('connected') else 'disconnected'} at "
                f"{_clock(c['timestamp'] / 1000)}")
            raise StageFailed("online", f"{thing} did not come online in presence within "
                                    f"{self.settings.online_timeout:.0f} s after boot ({seen}; flashed at "
                                    f"{_clock(flashed_at)})", "not-online") from None
        self.result.presence = "cloud presence (GetThingConnectivityData)"

    def _wait_console_online(self, console: "ConsoleReader | None", deadline: float, why: str) -> None:
        """Fallback when the cloud's presence cannot be read: the board's own console line
        ``online as <thing>`` (printed once its MQTT connection is up)."""
        thing = self.result.thing
        self.result.presence = f"boot seen on the console (cloud presence unavailable: {why})"
        self._journal("online", "fallback", self.result.presence)
        self._event(log=f"presence unavailable, watching the console instead: {why}")
        want = f"online as {thing}"
        while time.monotonic() < deadline:
            if self._cancel.is_set():
                raise StageFailed("online", "cancelled by the operator", "cancelled")
            if console is not None and any(want in line for line in list(console.lines)):
                return
            self._cancel.wait(0.25)
        raise StageFailed("online", f"{thing} did not report '{want}' on the console within "
                                f"{self.settings.online_timeout:.0f} s after boot (cloud presence unavailable: "
                                f"{why})", "not-online")

    def _wait_jitp_online(self, console: "ConsoleReader | None") -> None:
        """Line-CA mode with no cloud credentials: online is the board's own word, its console
        line ``online as <thing>``, printed once its MQTT connection as its thing is accepted
        (after AWS's JITP registered its certificate and created the thing on the first
        connect, which AWS drops; the firmware reconnects)."""
        thing = self.result.thing
        deadline = time.monotonic() + self.settings.online_timeout
        want = f"online as {thing}"
        self.result.presence = "the board's own MQTT connection (console: online as its thing, JITP)"
        while True:
            self._check_boot(console)
            lines = list(console.lines) if console is not None else []
            if any(want in line for line in lines):
                return
            if console is not None and console.lost:
                raise StageFailed("online", f"the board was unplugged while waiting for {thing} to come online "
                                        "(its port went away)", "unplugged")
            left = deadline - time.monotonic()
            if left <= 0:
                last = next((t.strip() for t in reversed(lines) if t.strip()), "none")
                raise StageFailed("online", f"{thing} did not come online within {self.settings.online_timeout:.0f} s "
                                        f"after boot (no '{want}' on its console; last line: {last}); check that the "
                                        "line CA is registered and ACTIVE with auto-registration on", "not-online")
            self._event(waiting_s=max(0, int(left)))
            if self._cancel.wait(0.25):
                raise StageFailed("online", "cancelled by the operator", "cancelled")

    def _job_written(self) -> bool:
        return bool(self._last_written)

    def _retire(self, certificate_id: str) -> None:
        try:
            self.cloud.deactivate(certificate_id)
            self._journal("retire", "done", {"certificate_id": certificate_id, "status": "INACTIVE"})
        except Exception as exc:  # noqa: BLE001 - journaled; the old cert is no longer on any board
            self._journal("retire", "failed", str(exc))

    def _rollback(self) -> None:
        """A cert minted for a board that never came online is set INACTIVE and journaled."""
        if self._pooled is not None and self.pool is not None:
            if not self._job_written():
                self.pool.release(self._pooled)  # never written to a board: back to the pool
            else:  # on a board that failed: never synced nor handed out again, INACTIVE at the next sync
                self.pool.fail(self._pooled)
                self._journal("rollback", "done", {"certificate_id": self._pooled, "pool": "failed"})
            return
        if self._minted is None or self.cloud is None:
            return
        try:
            self.cloud.deactivate(self._minted.certificate_id)
            self._journal("rollback", "done", {"certificate_id": self._minted.certificate_id, "status": "INACTIVE"})
        except Exception as exc:  # noqa: BLE001 - left for Station.recover()
            self._journal("rollback", "failed", str(exc))


_Failed = StageFailed  # the name boards/claim.py imports


def _check_settings(s: StationSettings, plan) -> None:
    """Refuse settings that contradict each other, before any board starts."""
    from fleetdesk.errors import BoardError

    identity_mode(s)  # refuses settings that contradict each other, by the names the operator sees
    if (s.identity or s.claim) and plan.partition("vfs") is None:
        raise BoardError("this bundle has no vfs partition, so a device identity cannot be written",
                         "use a bundle with a littlefs vfs partition (fleetdesk firmware build), or flash without "
                         "--identity")


class Station:
    """A bench of ports flashed with the same settings.

    Args:
        settings: the station's locked settings.
        cloud: a CloudTarget; by default, when ``settings.identity``, the one of
            ``settings.profile`` (sandbox or AWS), else the sandbox at ``settings.sandbox_state_dir``.
        db: a ProductionDB (default: the app data dir's).
    """

    def __init__(self, settings: StationSettings, *, cloud=None, db=None) -> None:
        from fleetdesk.boards.images import load_plan
        from fleetdesk.store.production import ProductionDB

        if settings.offline_pool and not settings.identity:
            raise BoardError("the offline pool gives each board an identity, but identity is off",
                             "turn identity on (--identity, or Identity on the Stations page), or leave the pool off")
        self.settings = settings
        self.plan = load_plan(settings.bundle)
        _check_settings(settings, self.plan)
        self.db = db or ProductionDB(settings.db_path)
        self._own_db = db is None
        self.cloud = cloud
        self._cloud_error: FleetdeskError | None = None
        self._line_ca_target = None
        if identity_mode(settings) is IdentityMode.LINE_CA:  # no cloud client at all: nothing to authenticate
            from fleetdesk.boards.line_ca import LineCA

            try:
                self._line_ca_target = LineCA(settings.line_ca_dir).device_target()
                LineCA(settings.line_ca_dir)._load()  # the CA key must be here to sign
            except FleetdeskError as exc:  # every board then FAILs with this reason and its own advice
                self._cloud_error = exc
        elif settings.identity and cloud is None:
            from fleetdesk.boards.identity import CloudTarget

            try:
                if settings.profile is not None:
                    self.cloud = CloudTarget.from_profile(settings.profile, settings.sandbox_state_dir)
                else:
                    self.cloud = CloudTarget.from_sandbox(settings.sandbox_state_dir)
            except FleetdeskError as exc:  # every board then FAILs with this reason, nothing flashed
                self._cloud_error = exc
        self.pool = None
        self._device_target = self._line_ca_target or self.cloud
        if settings.identity and settings.offline_pool:
            from fleetdesk.boards.certpool import CertPool
            from fleetdesk.boards.identity import CloudTarget

            self.pool = CertPool()
            self.pool.share = settings.pool_share
            meta = self.pool.meta()
            if meta.get("endpoint"):
                self._device_target = CloudTarget(None, meta["endpoint"], int(meta["port"]), meta["region"],
                                                  meta["ca_pem"].encode())
            self._cloud_error = None  # offline is fine: identities come from the pool
        self._claim_offline = ""
        if settings.identity and settings.claim and self._cloud_error is not None:
            self._claim_offline = self._cloud_error.message  # a stored claim cert is enough (check_ready)
            self._cloud_error = None
        self.pipelines: dict[str, BoardPipeline] = {}
        self._lock = threading.Lock()

    def probeable_ports(self) -> list[str]:
        from fleetdesk.boards.ports import list_ports, may_probe, parse_usb_id

        allowed = [parse_usb_id(a) for a in self.settings.allowed_usb]
        return [p.device for p in list_ports(include_serial=False) if may_probe(p, allowed)]

    def run_one(self, port: str, on_event=None, slot: str = "", overrides: dict | None = None) -> BoardResult:
        """Flash one board. ``overrides`` change settings for this board only (e.g. the operator's
        answer to a restore offer: ``{"restore_identity": True}`` or ``{"factory_reset": True}``)."""
        if self._cloud_error is not None:
            line_ca = identity_mode(self.settings) is IdentityMode.LINE_CA  # its error says what the admin does
            return self._refuse(port, self._cloud_error.message, self._cloud_error.advice if line_ca else None)
        if self.pool is not None or (self.settings.identity and self.settings.claim):
            self.check_ready()
        settings = replace(self.settings, **overrides) if overrides else self.settings
        pipe = BoardPipeline(port, self.plan, settings, self.db, self.cloud, on_event, slot, self.pool,
                             self._device_target)
        with self._lock:
            self.pipelines[port] = pipe
        try:
            return pipe.run()
        finally:
            with self._lock:
                self.pipelines.pop(port, None)

    def check_ready(self) -> None:
        """Raise before any board starts when the station cannot work (an empty offline pool
        is a clear stop, not a failure per board; so is claim mode with no claim certificate
        and no cloud to make one)."""
        if self.settings.identity and self.settings.claim:
            from fleetdesk.boards.claim import ClaimStore

            ClaimStore.for_station(self.settings, self.cloud).ensure(self.cloud, self._claim_offline)
        if self.pool is not None:
            from fleetdesk.boards.certpool import PoolEmpty

            if self._device_target is None:
                raise PoolEmpty("the certificate pool was never filled", "refill it once while online")
            self.pool.keep_share()
            if self.pool.level() == 0:
                raise PoolEmpty("the offline certificate pool is empty",
                                "reconnect to the cloud to refill it (or use claim provisioning)")

    def _refuse(self, port: str, reason: str, advice: str | None = None) -> BoardResult:
        adv = advise(reason)
        r = BoardResult(port, error=reason, advice=advice or adv.line(), advice_code=adv.code)
        r.attempt_id = self.db.finish(None, {"station": self.settings.station, "port": port, "result": "FAIL",
                                             "operator": self.settings.operator, "error": reason,
                                             "bundle_sha256": self.plan.sha256, "duration_s": 0.0})
        return r

    def run_many(self, ports: list[str], on_result: Callable[[BoardResult], None] | None = None,
                 on_event=None) -> list[BoardResult]:
        """Flash all ports at once (one thread + worker process each); results in port order."""
        results: dict[str, BoardResult] = {}
        with ThreadPoolExecutor(max_workers=max(1, len(ports))) as pool:
            futures = {pool.submit(self.run_one, p, on_event): p for p in ports}
            for fut in futures:
                res = fut.result()
                results[futures[fut]] = res
                if on_result:
                    on_result(res)
        return [results[p] for p in ports]

    def cancel_all(self) -> None:
        with self._lock:
            for pipe in self.pipelines.values():
                pipe.cancel()

    def recover(self) -> list[dict]:
        """Close runs a crash left open: deactivate their certificates, flag created things.

        Only runs whose process is gone are closed: a run another live process on this host
        is flashing (GUI + CLI on one production DB, a second terminal, or this process's own
        pipelines) is not touched, and a run started on another host is left open and
        reported. A certificate already deleted from the cloud counts as deactivated; one a
        later run PASSed with stays ACTIVE. A pooled certificate the run never began writing
        goes back to the pool; a written one is retired from it (never handed out again) and
        set INACTIVE now, or at the next pool sync or refill when the cloud is unreachable.

        Returns one dict per run handled (run_id, port, last_step, action); runs left to
        their owner on another host have ``left_open`` True.
        """
        from fleetdesk.boards.certpool import CertPool, gone
        from fleetdesk.store.production import run_owner

        out = []
        try:
            self.db.seal_clear_backups()  # backups an older version kept in clear: encrypted now
        except FleetdeskError:
            pass  # no usable key yet: the next backup says so, before any write
        owner = getattr(self.db, "owner", run_owner)  # the line ledger's heartbeats tell a dead station's runs
        runs = [r for r in self.db.unfinished_runs() if owner(r) != "live"]
        pool = self.pool if self.pool is not None or not runs else CertPool.existing()
        try:
            for run in runs:
                if owner(run) == "other-host":
                    out.append({**run, "left_open": True,
                                "action": f"left open: started on host {run['host']} (recover it there)"})
                    continue
                actions = []
                cid = run.get("certificate_id")
                pooled = pool.row(cid) if cid and pool is not None else None
                if cid and self.db.passed_with(cid, after=run["started_at"]):
                    actions.append("its certificate is in use by a later PASS (left ACTIVE)")
                elif pooled is not None:
                    actions.append(self._recover_pooled(pool, run, pooled))
                elif cid:
                    try:
                        if self.cloud is None:
                            raise FleetdeskError("no cloud connection")
                        self.cloud.deactivate(cid)
                        actions.append("orphan certificate deactivated")
                    except Exception as exc:  # noqa: BLE001 - retried at the next start
                        if not gone(exc):
                            actions.append(f"certificate deactivation failed: {exc}")
                            out.append({**run, "action": "; ".join(actions)})
                            continue
                        actions.append("orphan certificate already deleted")
                if run.get("thing_created"):
                    actions.append(f"thing {run['thing']} created for nothing (flagged)")
                how = "; ".join(actions) or "closed"
                if self.db.mark_recovered(run["run_id"], how) is False:
                    how = "closed meanwhile by another station of the line"  # (its certificate steps are idempotent)
                out.append({**run, "action": how})
        finally:
            if pool is not None and pool is not self.pool:
                pool.close()
        return out

    def _recover_pooled(self, pool, run: dict, pooled: dict) -> str:
        """A crashed run's pooled certificate: back to the pool when it was never written,
        else retired from it (INACTIVE now, or at the next sync/refill when offline)."""
        from fleetdesk.boards.certpool import gone

        cid = run["certificate_id"]
        if pooled["state"] in ("free", "retired") or (run.get("mac") and pooled["mac"] not in (None, run["mac"])):
            return f"pooled certificate no longer this run's ({pooled['state']})"
        written = any(j["step"] in ("write", "verify", "boot", "online") for j in self.db.journal(run["run_id"]))
        if not written and pooled["state"] == "assigned":
            pool.release(cid)
            return "pooled certificate never written: back in the pool"
        pool.fail(cid)
        if self.cloud is not None:
            try:
                self.cloud.deactivate(cid)
                pool.retired(cid)
                return "orphan pooled certificate deactivated (retired from the pool)"
            except Exception as exc:  # noqa: BLE001 - the pool retries at its next sync or refill
                if gone(exc):
                    pool.retired(cid)
                    return "orphan pooled certificate already deleted (retired from the pool)"
        return "pooled certificate retired from the pool (set INACTIVE at the next sync or refill)"

    def close(self) -> None:
        if self.pool is not None:  # a line station's unused pool share goes back to the line
            self.pool.close()
        if self._own_db:
            self.db.close()


def _clock(epoch_s: float) -> str:
    """A moment as the operator reads it: local "HH:MM:SS" (with the date when not today)."""
    t = time.localtime(epoch_s)
    return time.strftime("%H:%M:%S" if t[:3] == time.localtime()[:3] else "%Y-%m-%d %H:%M:%S", t)
