"""Host side of the esptool worker: spawn one process per port, read its events (typed:
``fleetdesk.boards.events``, one JSON line each on the worker's stdout).

    >>> result = probe("socket://127.0.0.1:5555")
    >>> result = flash("socket://127.0.0.1:5555", plan, baud=460800, on_event=print)

`flash` checks the chip family, security state and flash size before any write, writes all
parts in one esptool ``write_flash`` call with MD5 verify, and retries once at 115200 baud
when a faster rate fails (saying so in a ``log`` event and in ``result["baud_fallback"]``).
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from fleetdesk.boards.events import Fallback, Identity, Log, Ready, Result, WorkerEvent, from_line
from fleetdesk.boards.images import FlashPlan
from fleetdesk.errors import BoardError
from fleetdesk.roles import module_command

FALLBACK_BAUD = 115200
EventCallback = Callable[[WorkerEvent], None]


@dataclass
class WorkerResult:
    """What a worker reported at the end.

    Attributes:
        ok: the job completed (written, verified, reset).
        kind: on failure: "refused" (checks failed, nothing written), "cancelled", "serial",
            "esptool", "crashed" (the worker died) or "timeout".
        error: one-line reason.
        written: whether any flash write started.
        info: chip facts (chip, mac, revision, flash_size, ...).
        last_lines: the last esptool lines (for the operator's details view and exports).
        baud_fallback: True when the job only passed after falling back to 115200.
    """

    ok: bool
    kind: str = ""
    error: str = ""
    written: bool = False
    info: dict = field(default_factory=dict)
    last_lines: list[str] = field(default_factory=list)
    baud_fallback: bool = False
    trace: list[str] = field(default_factory=list)


def _spawn() -> subprocess.Popen:
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return subprocess.Popen(
        module_command("fleetdesk.boards.worker"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


class WorkerPool:
    """Spare worker processes with esptool already imported (saves ~1 s per board).

    A station calls `prewarm(n)` for its n slots; each `take()` hands out a spare (or spawns
    one); `refill()` after the last running job tops the pool back up, so a spawn never
    competes with a running flash for CPU. Spares exit on their own when this process goes away (their
    stdin closes).
    """

    def __init__(self) -> None:
        self._spare: list[subprocess.Popen] = []
        self._lock = threading.Lock()
        self._pending = 0
        self._active = 0
        self.size = 0

    def prewarm(self, n: int) -> None:
        """Keep ``n`` spare workers ready from now on."""
        with self._lock:
            self.size = max(self.size, n)
        threading.Thread(target=self._top_up, daemon=True).start()

    def _top_up(self) -> None:
        while True:
            with self._lock:
                self._spare = [p for p in self._spare if p.poll() is None]
                if len(self._spare) + self._pending >= self.size:
                    return
                self._pending += 1
            try:
                proc = _spawn()
            finally:
                with self._lock:
                    self._pending -= 1
            with self._lock:
                self._spare.append(proc)

    def take(self) -> subprocess.Popen:
        with self._lock:
            self._active += 1
            proc = None
            while self._spare:
                cand = self._spare.pop(0)
                if cand.poll() is None:
                    proc = cand
                    break
        return proc or _spawn()

    def refill(self) -> None:
        """A job ended: once no job is running, top the spares back up (so spawning never
        competes with a flash for CPU)."""
        with self._lock:
            self._active = max(0, self._active - 1)
            idle = self._active == 0
        if self.size > 0 and idle:
            threading.Thread(target=self._top_up, daemon=True).start()

    def close(self) -> None:
        with self._lock:
            spares, self._spare, self.size = self._spare, [], 0
        for p in spares:
            for stream in (p.stdin, p.stdout, p.stderr):
                try:
                    if stream is not None:
                        stream.close()
                except (OSError, AttributeError):
                    pass
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


POOL = WorkerPool()
atexit.register(POOL.close)


class EsptoolWorker:
    """One esptool worker subprocess running one job.

    Args:
        job: the job dict (see fleetdesk.boards.worker).
        on_event: called for each event on the reader thread.
    """

    def __init__(self, job: dict, on_event: EventCallback | None = None) -> None:
        self.job = job
        self._on_event = on_event
        self._result: Result | None = None
        self.trace: list[str] = []
        self._done = threading.Event()
        self.proc = POOL.take()
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(job) + "\n")
        self.proc.stdin.flush()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._err_reader = threading.Thread(target=self._read_err, daemon=True)
        self._err_reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            ev = from_line(line)
            if ev is None:
                continue
            if isinstance(ev, Log):
                self.trace.append(ev.text)
            if isinstance(ev, Result):
                self._result = ev
                self._done.set()
            elif self._on_event is not None:
                try:
                    self._on_event(ev)
                except Exception:  # noqa: BLE001 - a broken listener must not kill the reader
                    pass
        self._done.set()  # EOF: the worker exited (with or without a result)

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.trace.append(line.rstrip())
            del self.trace[:-2000]

    def send(self, msg: dict) -> None:
        """Send a JSON line to the worker (the parts after ``ready``, or an abort)."""
        self._write(json.dumps(msg) + "\n")

    def _write(self, line: str) -> None:
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(line)
            self.proc.stdin.flush()
        except (OSError, ValueError):  # the worker has gone: its end is read from its output
            pass

    def _end(self, grace: float) -> None:
        """Give the worker ``grace`` seconds to exit by itself, then kill it."""
        try:
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.kill()
            self.proc.wait()

    def _reap(self) -> None:
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        except (OSError, ValueError):
            pass
        self._end(30)
        self._reader.join(timeout=5)
        self._err_reader.join(timeout=5)
        POOL.refill()

    def cancel(self) -> None:
        """Ask the worker to stop at the next progress tick (it closes the port cleanly)."""
        self._write("cancel\n")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()

    def wait(self, timeout: float | None = None) -> WorkerResult:
        """Wait for the result; on timeout cancel, then kill after a grace period.

        Returns as soon as the result line arrives (the worker closed the port before
        sending it); the process is reaped in the background.
        """
        if not self._done.wait(timeout):
            self.cancel()
            self._end(5)
            self._reader.join(timeout=2)
            return WorkerResult(False, "timeout", f"no answer within {timeout:.0f} s",
                                self._result.written if self._result is not None else True, trace=self.trace)
        if self._result is None:  # EOF without a result: the worker died
            self._end(5)
            self._err_reader.join(timeout=2)
        threading.Thread(target=self._reap, daemon=True).start()
        r = self._result
        if r is None:
            tail = [t for t in self.trace if t][-3:]
            return WorkerResult(False, "crashed", "the esptool worker died: " + (" | ".join(tail) or f"exit {self.proc.returncode}"),
                                True, trace=self.trace)
        return WorkerResult(ok=bool(r.ok), kind=r.kind or "", error=r.error or "", written=bool(r.written),
                            info=r.info or {}, last_lines=r.last_lines or [], trace=self.trace)


def probe(port: str, *, timeout: float = 30, on_event: EventCallback | None = None) -> WorkerResult:
    """Read chip, revision, features, crystal, MAC, flash id/size (ROM only, no writes)."""
    return EsptoolWorker({"op": "probe", "port": port}, on_event).wait(timeout)


class _CompressCache:
    """Each distinct part is zlib-compressed once per process (level 9, as esptool does),
    not once per board: 16 boards of the same app cost one compression, not 16."""

    def __init__(self) -> None:
        self._dir: Path | None = None
        self._lock = threading.Lock()
        self._busy: dict[str, threading.Lock] = {}
        self.max_entries = 32

    def entry(self, data: bytes) -> tuple[str, str] | None:
        import hashlib
        import zlib

        if len(data) < 64 * 1024:  # small parts: not worth a file
            return None
        padded = data + b"\xff" * (-len(data) % 4)  # esptool pads to 4 bytes before compressing
        key = hashlib.sha256(padded).hexdigest()
        with self._lock:
            if self._dir is None:
                self._dir = Path(tempfile.mkdtemp(prefix="fd-zcache-"))
                atexit.register(shutil.rmtree, self._dir, True)
            lock = self._busy.setdefault(key, threading.Lock())
            if len(self._busy) > self.max_entries:  # bound the disk use: start over
                for f in self._dir.glob("*.z"):
                    f.unlink(missing_ok=True)
                self._busy = {key: lock}
        path = self._dir / f"{key}.z"
        with lock:
            if not path.exists():
                tmp = path.with_suffix(".tmp")
                tmp.write_bytes(zlib.compress(padded, 9))
                tmp.replace(path)
        return key, str(path)


ZCACHE = _CompressCache()


_SWEPT = False


def _fresh_heads(plan: FlashPlan, vfs) -> dict[str, str]:
    """MD5 of the vfs head (littlefs blocks 0-1) when the board holds no identity for sure:
    erased, or exactly this bundle's own image (its root directory has no /config.json)."""
    import hashlib

    from fleetdesk.boards.worker import HEAD_BYTES

    heads = {hashlib.md5(b"\xff" * HEAD_BYTES).hexdigest(): "erased"}
    image = next((p.data for p in plan.parts if p.offset == vfs.offset), None)
    if image is not None and len(image) >= HEAD_BYTES:
        key = hashlib.sha256(image).hexdigest()
        if key not in _NO_IDENTITY:  # once per bundle, not per board
            from fleetdesk.boards.vfs import identity_files

            _NO_IDENTITY[key] = identity_files(image) is None
        if _NO_IDENTITY[key]:
            heads[hashlib.md5(image[:HEAD_BYTES]).hexdigest()] = "the bundle's own filesystem, no identity"
    return heads


_NO_IDENTITY: dict[str, bool] = {}


def _sweep_stale_tmp() -> None:
    """Remove the temp folders of flash jobs whose process died (a killed app cannot clean up;
    their vfs images hold device keys). Once per process."""
    global _SWEPT
    if _SWEPT:
        return
    _SWEPT = True
    from fleetdesk.process import pid_alive

    import time

    for folder in Path(tempfile.gettempdir()).glob("fd-flash-*"):
        pid = folder.name.split("-")[2]
        try:
            stale = not pid_alive(int(pid)) if pid.isdigit() else time.time() - folder.stat().st_mtime > 3600
        except OSError:
            continue
        if stale:
            shutil.rmtree(folder, ignore_errors=True)


def _write_private_tmp(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


PREPARE_GRACE = 180.0  # s to wait for a running ``prepare`` (a cloud mint) once the worker has ended


class AttemptEnded(BoardError):
    """This attempt's worker ended before it read the board's identity: the job's own error (a
    serial or esptool failure) stands, and a baud-fallback retry reads the board again."""


class PrepareError(Exception):
    """Raised by a ``prepare`` callback to stop before writing (the reason is reported)."""


class FlashJob:
    """A flash of ``plan`` on ``port`` in a worker process, cancellable from another thread.

    Args:
        port: serial URL.
        plan: what to write (or the base plan ``prepare`` will extend).
        baud: the station's baud rate (falls back to 115200 once on failure).
        on_event: receives every worker event (but ``result`` and ``ready``) plus the host's own
            ``Log`` and ``Fallback`` on a baud fallback (``fleetdesk.boards.events``).
        security: options for the pre-write checks (see fleetdesk.boards.worker).
        reset: hard-reset after the write (boot the new firmware).
        prepare: called with the board's facts (chip, mac, flash size...) once connected and
            checked, returns the plan to write (e.g. with the device's identity in its vfs).
            Runs while the worker holds the connection, so the board is connected once.
            Raising stops the job before any write (result kind "refused" or "prepare").
        probe_identity: read the identity the board carries from its vfs partition (a few KB,
            same connection, before any write); ``prepare`` gets it with `board_identity`.
    """

    def __init__(self, port: str, plan: FlashPlan, *, baud: int = 460800, on_event: EventCallback | None = None,
                 security: dict | None = None, reset: bool = True,
                 timeout: float = 600, prepare: Callable[[dict], FlashPlan] | None = None,
                 probe_identity: bool = False) -> None:
        self.port, self.plan, self.baud = port, plan, baud
        self.probe_identity = probe_identity
        self._identity: Identity | None = None
        self._identity_seen = threading.Event()
        self.on_event = on_event or (lambda ev: None)
        self.security = security or {}
        self.reset = reset
        self.timeout = timeout
        self.prepare = prepare
        self.prepared: FlashPlan | None = None
        self.prepare_error: BaseException | None = None
        self._prepare_thread: threading.Thread | None = None
        self._worker: EsptoolWorker | None = None
        self._cancelled = threading.Event()
        # set when run() has returned: a worker that ends early may be followed by a baud-fallback
        # retry, so only the end of the whole job means "no identity will come"
        self._run_over = threading.Event()
        # set when one attempt's worker has ended without reading the board: that attempt's
        # ``prepare`` stops waiting for the identity (a retry's Ready starts a new one); else the
        # attempt waits for its prepare and the prepare for an identity that never comes
        self._attempt_over = threading.Event()
        self._last_error = ""

    def cancel(self) -> None:
        self._cancelled.set()
        if self._worker is not None:
            self._worker.cancel()

    def run(self) -> WorkerResult:
        try:
            result = self._run()
            self._last_error = "" if result.ok else (result.error or "")
            return result
        finally:
            self._run_over.set()

    def _run(self) -> WorkerResult:
        _sweep_stale_tmp()
        with tempfile.TemporaryDirectory(prefix=f"fd-flash-{os.getpid()}-") as tmp:
            self._tmp = Path(tmp)
            sec = dict(self.security)
            if self.plan.min_chip_revision is not None:
                sec.setdefault("min_rev", self.plan.min_chip_revision)
            job = {"op": "flash", "port": self.port, "baud": self.baud, "chip": self.plan.chip,
                   "security": sec, "reset": self.reset}
            # shared parts (the app) compressed once for all boards; per-board parts as usual
            job["zcache"] = self._zcache(self.plan)
            vfs = self.plan.partition("vfs") if self.probe_identity else None
            if vfs is not None:
                job["probe"] = {"offset": vfs.offset, "size": vfs.size, "path": str(self._tmp / "board-identity.json"),
                                "fresh_md5": _fresh_heads(self.plan, vfs)}
            if self.prepare is None:
                job["parts"] = self._write_parts(self.plan, "p")
            else:
                job["await_parts"] = True
            result = self._once(job)
            if (not result.ok and result.kind in ("serial", "esptool") and self.baud != FALLBACK_BAUD
                    and not self._cancelled.is_set()):
                self.on_event(Log(f"Failed at {self.baud} baud ({result.error}); falling back to {FALLBACK_BAUD} baud"))
                self.on_event(Fallback(FALLBACK_BAUD, result.error))
                first = result
                result = self._once({**job, "baud": FALLBACK_BAUD})
                result.written = result.written or first.written  # the first attempt may have written
                result.baud_fallback = True
                result.trace = first.trace + ["--- retry at 115200 ---"] + result.trace
            return result

    def _write_parts(self, plan: FlashPlan, tag: str) -> list[dict]:
        parts = []
        for i, p in enumerate(plan.parts):
            path = self._tmp / f"{tag}{i}-{p.offset:#x}.bin"
            _write_private_tmp(path, p.data)  # a vfs image holds the device key and Wi-Fi password
            parts.append({"offset": p.offset, "path": str(path), "name": p.name})
        return parts

    def _zcache(self, plan: FlashPlan) -> dict[str, str]:
        out = {}
        for p in plan.parts:
            hit = ZCACHE.entry(p.data)
            if hit:
                out[hit[0]] = hit[1]
        return out

    def board_identity(self, timeout: float = 120, cancel: threading.Event | None = None):
        """The identity read from the board (a `fleetdesk.boards.vfsprobe.BoardIdentity`), waiting
        for the worker's probe; None when no probe ran (no vfs partition in the plan).

        Raises:
            AttemptEnded: this attempt's worker ended first (a baud fallback may read the board).
            BoardError: the probe failed, every attempt is over, or no answer in ``timeout``.
        """
        from fleetdesk.boards.vfs import unpack_files
        from fleetdesk.boards.vfsprobe import BoardIdentity

        if not self.probe_identity or self.plan.partition("vfs") is None:
            return None
        waited = 0.0
        while not self._identity_seen.wait(0.1):
            waited += 0.1
            if (cancel is not None and cancel.is_set()) or self._cancelled.is_set():
                raise BoardError("cancelled by the operator")
            if self._attempt_over.is_set() and not self._identity_seen.is_set():
                raise AttemptEnded(f"the board's identity could not be read ({self._last_error or 'the connection ended first'})",
                                   "check the cable and retry; nothing was written")
            if self._run_over.is_set() or waited >= timeout:
                # every attempt (a baud fallback included) is over and none read the board
                why = self._last_error or ("no answer in %.0f s" % timeout if waited >= timeout
                                           else "the connection ended first")
                raise BoardError(f"the board's identity could not be read ({why})",
                                 "check the cable and retry; nothing was written")
        ev = self._identity or Identity(found=False)
        if ev.error:
            raise BoardError(f"the board's identity could not be read: {ev.reason}",
                             "check the cable and retry; nothing was written")
        files = {}
        if ev.path:
            with open(ev.path, "rb") as f:
                files = unpack_files(f.read()) or {}
            os.unlink(ev.path)
        fields = {k: getattr(ev, k) for k in ("reason", "thing", "product", "certificate_id", "bytes_read", "reads")}
        return BoardIdentity(bool(ev.found), files=files, **{k: v for k, v in fields.items() if v is not None})

    def _on_worker_event(self, ev: WorkerEvent) -> None:
        if isinstance(ev, Identity):
            self._identity = ev
            self._identity_seen.set()
        if isinstance(ev, Ready) and self.prepare is not None:
            self._prepare_thread = threading.Thread(target=self._do_prepare, args=(ev,), daemon=True)
            self._prepare_thread.start()
            return
        self.on_event(ev)

    def _do_prepare(self, ready: Ready) -> None:
        worker = self._worker
        try:
            if self.prepared is None:  # a baud fallback retry reuses the first identity
                assert self.prepare is not None  # only started with a prepare callback
                self.prepared = self.prepare(dict(ready.facts))
            parts = self._write_parts(self.prepared, "d")
        except BaseException as exc:  # noqa: BLE001 - reported as the job's failure
            self.prepare_error = exc
            if worker is not None:
                worker.send({"abort": True, "reason": str(exc)})
            return
        if worker is not None:
            worker.send({"parts": parts})

    def _once(self, job: dict) -> WorkerResult:
        if self._cancelled.is_set():
            return WorkerResult(False, "cancelled", "cancelled by the operator")
        self.prepare_error, self._prepare_thread = None, None
        self._attempt_over.clear()
        self._worker = EsptoolWorker(job, self._on_worker_event)
        if self._cancelled.is_set():
            self._worker.cancel()
        result = self._worker.wait(self.timeout)
        if not self._identity_seen.is_set():  # this worker reads nothing more: its prepare stops waiting
            self._last_error = result.error or ""
            self._attempt_over.set()
        prep = self._prepare_thread
        if prep is not None:  # the worker may end first (STOP, a dead port): prepare's cloud calls
            prep.join(PREPARE_GRACE)  # finish before anyone rolls back what it made
            if prep.is_alive() and not result.ok:
                result.error = (result.error + "; " if result.error else "") + \
                    f"the identity step still had not finished {PREPARE_GRACE:.0f} s later"
        if self.prepare_error is not None and not result.ok and not isinstance(self.prepare_error, AttemptEnded):
            # (a prepare that only lost this attempt's worker leaves the worker's own error, so a
            # serial failure still gets the baud fallback)
            result.kind = "prepare"
            result.error = str(self.prepare_error)
            result.written = False
        return result


def flash(port: str, plan: FlashPlan, **kwargs) -> WorkerResult:
    """Flash ``plan`` on ``port`` (see `FlashJob` for the keyword arguments)."""
    return FlashJob(port, plan, **kwargs).run()
