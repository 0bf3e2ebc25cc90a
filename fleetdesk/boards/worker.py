"""One esptool worker process per port (esptool has one logger per process, esptool#1102).

Run as ``python -m fleetdesk.boards.worker``. The first stdin line is a JSON job; a later
line ``cancel`` stops the job at the next progress tick (the port is closed cleanly, so the
next attempt can use it). Events go to stdout as JSON lines, each a typed event of
``fleetdesk.boards.events`` (written with ``events.to_line``):

    {"event": "stage", "stage": "connecting|erasing|writing|verifying|booting"}
    {"event": "progress", "bytes": N, "total": T, "percent": P}
    {"event": "log", "text": "..."}
    {"event": "info", "chip": ..., "mac": ..., ...}            (probe and flash)
    {"event": "identity", "found": bool, "thing", "certificate_id", "path", ...}  (``probe``)
    {"event": "result", "ok": bool, "error": str, "kind": str, "written": bool}

Jobs: ``{"op": "probe", "port", "baud"}`` and ``{"op": "flash", "port", "baud", "chip",
"parts": [{"offset", "path", "name"}], "min_flash": N,
"security": {"allow_secure_boot": false, "allow_flash_encryption": false, "min_rev": N},
"probe": {"offset", "size", "path"}, "reset": true}``. Everything that can refuse runs before the first write.
"""

from __future__ import annotations

import json
import os
import queue
import re
import sys
import threading
import time

from fleetdesk.boards.events import Identity, Info, Log, Progress, Ready, Result, Stage, WorkerEvent, to_line


class Cancelled(Exception):
    """The host asked the worker to stop."""


class Refused(Exception):
    """A pre-write check failed; nothing was written."""


class _Events:
    def __init__(self, stream) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def emit(self, event: WorkerEvent) -> None:
        with self._lock:
            self._stream.write(to_line(event) + "\n")
            self._stream.flush()


def _make_logger(events: _Events, cancel: threading.Event, plan_parts: list[tuple[int, int]]):
    from esptool.logger import TemplateLogger

    class StationLogger(TemplateLogger):
        """Turns esptool's prints and progress bars into stage/progress events."""

        def __init__(self) -> None:
            self.stage_name = "connecting"
            self.last_emit = 0.0
            self.last_pct = -1
            self.lines: list[str] = []
            self.written = False
            self.plan_parts = plan_parts

        def _check(self) -> None:
            if cancel.is_set():
                raise Cancelled("cancelled by the operator")

        def set_stage(self, stage: str) -> None:
            if stage != self.stage_name:
                self.stage_name = stage
                events.emit(Stage(stage))

        def print(self, *args, **kwargs) -> None:
            text = " ".join(str(a) for a in args)
            self._check()
            if kwargs.get("end", "\n") == "":  # "Connecting....": one line, not a line per dot
                self.partial = getattr(self, "partial", "") + text
                return
            text = (getattr(self, "partial", "") + text).strip()
            self.partial = ""
            if not text:
                return
            self.lines.append(text)
            del self.lines[:-200]
            if text.startswith("Erasing") or "will be erased" in text:
                self.set_stage("erasing")
            elif text.startswith("Verifying written data"):
                self.set_stage("verifying")
            elif text.startswith("Hard resetting"):
                self.set_stage("booting")
            events.emit(Log(text))

        def note(self, message: str) -> None:
            self.print("Note: " + message)

        def warning(self, message: str) -> None:
            self.print("Warning: " + message)

        def error(self, message: str) -> None:
            self.print("Error: " + message)

        def stage(self, finish: bool = False) -> None:
            self._check()

        def set_verbosity(self, verbosity: str) -> None:
            pass

        def progress_bar(self, cur_iter, total_iters, prefix="", suffix="", bar_length=30) -> None:
            self._check()
            m = re.search(r"Writing at (0x[0-9a-fA-F]+)", prefix)
            if not m:
                return
            self.written = True
            self.set_stage("writing")
            addr = int(m.group(1), 16)
            done = 0
            total = sum(size for _, size in self.plan_parts) or 1
            for off, size in self.plan_parts:
                if addr >= off + size:
                    done += size
                elif addr >= off:
                    done += min(size, addr - off)
            pct = int(done * 100 / total)
            now = time.monotonic()
            if pct != self.last_pct and (now - self.last_emit >= 0.05 or pct == 100):
                self.last_pct, self.last_emit = pct, now
                events.emit(Progress(done, total, pct))

    return StationLogger()


def _info(esp, cmds) -> dict:
    info: dict = {"chip": esp.CHIP_NAME}
    for key, fn in (
        ("description", esp.get_chip_description),
        ("features", esp.get_chip_features),
        ("crystal_mhz", esp.get_crystal_freq),
        ("revision", esp.get_chip_revision),
    ):
        try:
            info[key] = fn()
        except Exception:  # noqa: BLE001 - not every ROM answers every query
            info[key] = None
    mac = esp.read_mac()
    info["mac"] = ":".join(f"{b:02x}" for b in mac) if mac else None
    try:
        info["secure_boot"] = bool(esp.get_secure_boot_enabled())
        info["flash_encryption"] = bool(esp.get_flash_encryption_enabled())
    except Exception:  # noqa: BLE001 - not every ROM answers: unknown, not an error
        info["secure_boot"] = info["flash_encryption"] = None
    try:
        info["secure_download_mode"] = bool(esp.secure_download_mode)
    except Exception:  # noqa: BLE001 - not every ROM answers: unknown, not an error
        info["secure_download_mode"] = None
    return info


def _flash_info(esp, cmds, info: dict) -> None:
    try:
        fid = esp.flash_id()
        info["flash_id"] = f"{fid:06x}"
        info["flash_manufacturer"] = f"{fid & 0xFF:02x}"
    except Exception:  # noqa: BLE001 - not every ROM answers: unknown, not an error
        info["flash_id"] = None
    size = cmds.detect_flash_size(esp)
    info["flash_size"] = size
    from fleetdesk.boards.images import parse_size

    info["flash_bytes"] = parse_size(size) if size else None


def _security_checks(info: dict, sec: dict) -> None:
    if info.get("secure_boot") and not sec.get("allow_secure_boot"):
        raise Refused(
            "secure boot is enabled on this board and the bundle is not signed for it; "
            "writing it would leave a board that does not boot"
        )
    if info.get("flash_encryption") and not sec.get("allow_flash_encryption"):
        raise Refused(
            "flash encryption is enabled on this board and the bundle is plaintext; "
            "writing it would brick the board"
        )
    min_rev = sec.get("min_rev")
    if min_rev is not None and info.get("revision") is not None and info["revision"] < min_rev:
        raise Refused(
            f"chip revision v{info['revision'] // 100}.{info['revision'] % 100} is below the bundle's minimum "
            f"v{min_rev // 100}.{min_rev % 100}"
        )


def _await_parts(inbox: "queue.Queue", cancel: threading.Event, timeout: float) -> dict:
    import queue

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cancel.is_set():
            raise Cancelled("cancelled by the operator")
        try:
            msg = inbox.get(timeout=0.1)
        except queue.Empty:
            continue
        if msg.get("abort"):
            raise Refused(msg.get("reason") or "aborted before writing")
        return msg
    raise Refused(f"no image arrived within {timeout:.0f} s; nothing was written")


HEAD_BYTES = 8192  # littlefs blocks 0 and 1: the superblock and root directory pair


def _probe_identity(esp, probe: dict, events: _Events) -> None:
    """Does the board carry an identity? Mount its vfs read-only over this connection (a few
    KB read). The files (with the private key) go to a 0600 file for the host; the event
    carries only names and digests."""
    from pathlib import Path

    from fleetdesk.boards.vfs import pack_files
    from fleetdesk.boards.vfsprobe import probe_identity
    from fleetdesk.paths import write_private

    t0 = time.monotonic()
    try:
        fresh = probe.get("fresh_md5") or {}
        if fresh:  # the superblock pair's MD5, computed on the chip: a blank board or the bundle's own
            head = esp.flash_md5sum(int(probe["offset"]), HEAD_BYTES)  # image costs one command, not a mount
            if head in fresh:
                events.emit(Identity(found=False, reason=fresh[head], ms=round((time.monotonic() - t0) * 1000)))
                return
        found = probe_identity(esp.read_flash, int(probe["offset"]), int(probe["size"]))
    except Exception as exc:  # noqa: BLE001 - a failed probe is "unknown", reported as such
        events.emit(Identity(found=False, reason=f"probe failed: {type(exc).__name__}: {exc}", error=True))
        return
    if found.files:
        write_private(Path(probe["path"]), pack_files(found.files))
    events.emit(Identity(**found.summary(), path=probe["path"] if found.files else None,
                         ms=round((time.monotonic() - t0) * 1000)))


class _ZlibWithCache:
    """zlib for esptool's write_flash that returns parts the host compressed once per bundle
    (looked up by the SHA-256 of the exact input, so a cache hit is the same bytes zlib would
    produce); anything else is compressed here as usual."""

    def __init__(self, real, cache: dict[str, str]) -> None:
        self._real, self._cache = real, cache

    def compress(self, data, level=-1):
        import hashlib

        path = self._cache.get(hashlib.sha256(data).hexdigest()) if level == 9 else None
        if path:
            with open(path, "rb") as f:
                return f.read()
        return self._real.compress(data, level)

    def __getattr__(self, name):
        return getattr(self._real, name)


def _cheap_trace_formatting() -> None:
    """esptool 5.x builds its trace lines with f-strings, so `HexFormatter.__str__` hex-dumps
    every packet even with tracing off (~20 % of a core per flashing board, measured). This
    worker never enables tracing: format a length only."""
    from esptool import loader

    class _LengthOnly(loader.HexFormatter):
        def __str__(self) -> str:
            return f"<{len(self._s)} bytes>"

    loader.HexFormatter = _LengthOnly


def _fast_socket_reads() -> None:
    """pyserial's ``socket://`` reports at most 1 byte waiting (a ``select`` poll), so esptool's
    SLIP reader reads network serial ports (ser2net, virtual boards) one byte per call: about
    20 us of CPU per byte, as much as the line time at 460800 baud. Report the real count
    (FIONREAD), as the POSIX serial backend does. Other platforms keep pyserial's behaviour."""
    try:
        import fcntl
        import struct
        import termios

        from serial.serialutil import PortNotOpenError
        from serial.urlhandler import protocol_socket
    except ImportError:
        return

    def in_waiting(self) -> int:
        if not self.is_open:
            raise PortNotOpenError()
        return struct.unpack("I", fcntl.ioctl(self._socket.fileno(), termios.FIONREAD, b"\0\0\0\0"))[0]

    protocol_socket.Serial.in_waiting = property(in_waiting)


def run_job(job: dict, events: _Events, cancel: threading.Event, inbox=None) -> dict:
    """Run one job; returns the result fields (also emitted as the last event).

    With ``"await_parts": true`` the worker connects, checks and reports ``ready`` (with the
    chip facts), then waits for a stdin line ``{"parts": [...]}`` (or ``{"abort": true}``):
    the host mints the board's identity from its MAC in between, on the same connection.
    """
    from esptool import cmds
    from esptool.logger import log

    if not job.get("trace"):
        _cheap_trace_formatting()
    _fast_socket_reads()
    if job.get("zcache"):
        import zlib

        cmds.zlib = _ZlibWithCache(zlib, job["zcache"])
    job_parts = job.get("parts", [])
    parts = [(int(p["offset"]), os.path.getsize(p["path"])) for p in job_parts]
    logger = _make_logger(events, cancel, parts)
    log.set_logger(logger)
    events.emit(Stage("connecting"))
    esp = None
    result: dict = {"ok": False, "written": False}
    try:
        esp = cmds.detect_chip(job["port"], 115200, job.get("before", "default-reset"),
                               connect_attempts=job.get("attempts", 3))
        info = _info(esp, cmds)
        if job["op"] == "probe":
            # the ROM answers a flash id only once the flash is attached (as esptool's flash-id does)
            cmds.attach_flash(esp)
            _flash_info(esp, cmds, info)
            events.emit(Info(info))
            result = {"ok": True, "written": False, "info": info}
            return result
        from fleetdesk.boards.images import normalize_chip

        want = normalize_chip(job.get("chip"))
        if want and normalize_chip(esp.CHIP_NAME) != want:
            raise Refused(f"the bundle is for {want.upper()} but the board is {esp.CHIP_NAME}")
        _security_checks(info, job.get("security") or {})
        if job.get("await_parts"):
            # the host mints the identity from the MAC while the stub uploads (overlapped)
            events.emit(Ready(info))
        esp = cmds.run_stub(esp)
        baud = int(job.get("baud") or 115200)
        if baud != 115200:
            esp.change_baud(baud)
        cmds.attach_flash(esp)
        _flash_info(esp, cmds, info)
        events.emit(Info(info))
        if job.get("probe"):
            probe = job["probe"]
            if info.get("flash_bytes") and int(probe["offset"]) + int(probe["size"]) > info["flash_bytes"]:
                # the write is refused below (image larger than the flash); nothing to read there
                events.emit(Identity(found=False, reason="the vfs partition lies beyond this board's flash", ms=0))
            else:
                _probe_identity(esp, probe, events)
        if job.get("await_parts"):
            msg = _await_parts(inbox, cancel, float(job.get("parts_timeout", 120)))
            job_parts = msg["parts"]
            parts = [(int(p["offset"]), os.path.getsize(p["path"])) for p in job_parts]
            logger.plan_parts = parts
        need = max((off + size for off, size in parts), default=0)
        if info.get("flash_bytes") and need > info["flash_bytes"]:
            raise Refused(f"the image needs {need // 1024} KB but the board has only {info['flash_bytes'] // 1024} KB of flash")
        if parts:
            cmds.write_flash(esp, [(int(p["offset"]), p["path"]) for p in job_parts], flash_size="keep", compress=True)
            events.emit(Progress(sum(s for _, s in parts), sum(s for _, s in parts) or 1, 100))
        if job.get("reset", True):
            logger.set_stage("booting")
            cmds.reset_chip(esp, "hard-reset")
        result = {"ok": True, "written": logger.written, "info": info}
    except Cancelled as exc:
        result = {"ok": False, "kind": "cancelled", "error": str(exc), "written": logger.written}
    except Refused as exc:
        result = {"ok": False, "kind": "refused", "error": str(exc), "written": False}
    except Exception as exc:  # noqa: BLE001 - FatalError, SerialException, OSError: reported, never raised
        name = type(exc).__name__
        kind = "serial" if name in ("SerialException", "SerialTimeoutException", "OSError", "ConnectionResetError",
                                     "BrokenPipeError") else "esptool"
        result = {"ok": False, "kind": kind, "error": f"{exc}".strip() or name, "written": logger.written,
                  "exception": name}
    finally:
        if esp is not None:
            try:
                esp._port.close()
            except Exception:  # noqa: BLE001 - the port is gone already
                pass
    result["last_lines"] = logger.lines[-20:]
    return result


def main() -> int:
    import queue
    import signal

    # A terminal's Ctrl-C reaches the whole process group: the station decides (STOP at the next
    # block, fleetdesk/interrupt.py) and tells this worker through its job; the worker never dies of it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    events = _Events(os.fdopen(os.dup(1), "w", buffering=1))
    sys.stdout = sys.stderr  # stray prints must not corrupt the event stream
    from esptool import cmds  # noqa: F401 - import before the job arrives (warm spare workers)

    line = sys.stdin.readline()
    if not line.strip():
        return 0  # a spare worker the host never used
    try:
        job = json.loads(line)
    except ValueError:
        events.emit(Result(ok=False, kind="internal", error="bad job line"))
        return 2
    cancel = threading.Event()
    inbox: queue.Queue = queue.Queue()

    def watch_stdin() -> None:
        for cmd in sys.stdin:
            cmd = cmd.strip()
            if cmd == "cancel":
                cancel.set()
            elif cmd.startswith("{"):
                try:
                    inbox.put(json.loads(cmd))
                except ValueError:
                    pass
        cancel.set()  # host went away: stop too

    threading.Thread(target=watch_stdin, daemon=True).start()
    result = run_job(job, events, cancel, inbox)
    events.emit(Result(**result))
    return 0 if result.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main())
