"""Run fleetdesk the way a new user would: an installed copy outside the repo, their own HOME."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Variables of the developer's environment that would point an installed copy back at the repo
# or at the developer's own state.
_DROP = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")


def user_env(home: Path, bin_dir: Path) -> dict[str, str]:
    """The environment of a new user: own HOME and XDG dirs, the install's bin first on PATH."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("FLEETDESK_") and k not in _DROP and not k.startswith("XDG_")}
    env.update(HOME=str(home), PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}", QT_QPA_PLATFORM="offscreen",
               PYTHONUNBUFFERED="1")
    env.pop("DISPLAY", None)
    env.pop("WAYLAND_DISPLAY", None)
    return env


def run(cmd: list[str], env: dict, cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


class Server:
    """A long-running command that prints one JSON line when it is ready."""

    def __init__(self, cmd: list[str], env: dict, cwd: Path, log: Path, timeout: float = 120) -> None:
        self.log = log
        self._log = open(log, "wb")
        self.proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=self._log,
                                     stdin=subprocess.DEVNULL, text=True)
        lines: queue.Queue = queue.Queue()
        threading.Thread(target=lambda: lines.put(self.proc.stdout.readline()), daemon=True).start()
        try:
            line = lines.get(timeout=timeout)
        except queue.Empty:
            self.stop()
            raise AssertionError(f"{cmd[1:3]} not ready after {timeout} s: {self.tail()}") from None
        if not line:
            self.stop()
            raise AssertionError(f"{cmd[1:3]} exited with {self.proc.returncode}: {self.tail()}")
        self.doc = json.loads(line)

    def tail(self) -> str:
        self._log.flush()
        return self.log.read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()


def venv_bin(venv: Path) -> Path:
    return venv / ("Scripts" if sys.platform == "win32" else "bin")
