"""Is a process still there? One answer for every pid file and registry entry in fleetdesk;
and one way to end a child process we started."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import subprocess

_STILL_ACTIVE = 259  # GetExitCodeProcess's code for a process that has not exited


def pid_alive(pid: int) -> bool:
    """True if a process with ``pid`` exists and has not exited.

    On Windows the process is opened and its exit code read (``os.kill(pid, 0)`` would send it
    a Ctrl-C there). Elsewhere ``kill(pid, 0)`` answers; a zombie (exited, not yet reaped by
    its parent) still answers it, so on Linux ``/proc/<pid>/stat`` is read and a zombie counts
    as gone.

    Args:
        pid: the process id; 0 or negative is never alive.
    """
    if pid <= 0:
        return False
    if sys.platform == "win32":
        import ctypes

        handle = ctypes.windll.kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return False
        code = ctypes.c_ulong()
        ctypes.windll.kernel32.GetExitCodeProcess(handle, ctypes.byref(code))
        ctypes.windll.kernel32.CloseHandle(handle)
        return code.value == _STILL_ACTIVE
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie still answers kill(0); treat it as gone
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def stop_child(proc: subprocess.Popen, timeout: float = 15.0) -> None:
    """End a child we started: SIGTERM (its clean shutdown), then SIGKILL after ``timeout`` s; reaped."""
    import signal
    import subprocess

    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
