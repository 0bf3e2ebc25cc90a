"""A throwaway PostgreSQL server for the tests: the real server binaries (Debian's
``postgresql`` package, installed by ``./run`` when root), ``initdb`` in a temp dir, a free
port, a unix socket in the temp dir, stopped (and deleted) at the end.

PostgreSQL refuses to run as root, so under uid 0 (CI) the data dir is handed to ``nobody``
and initdb/postgres run as that user.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

SUPERUSER = "fleetdesk"


def find_bin(name: str) -> str | None:
    """``name`` (initdb, postgres) on PATH or in Debian's /usr/lib/postgresql/<version>/bin."""
    found = shutil.which(name)
    if found:
        return found
    for path in sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True):
        if os.access(path, os.X_OK):
            return path
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgServer:
    """One running server; ``url(dbname)`` names a database on it, `create_db` makes a fresh one."""

    def __init__(self) -> None:
        initdb, postgres = find_bin("initdb"), find_bin("postgres")
        if not initdb or not postgres:
            raise RuntimeError("PostgreSQL server binaries (initdb, postgres) not found: "
                               "apt-get install postgresql (./run does it when root)")
        root = os.geteuid() == 0
        # under root the server runs as nobody, who must reach its dir: the run's private TMPDIR is 0700
        self.base = Path(tempfile.mkdtemp(prefix="fleetdesk-pg-", dir="/tmp" if root else None))
        self.data, self.sock = self.base / "data", self.base / "sock"
        self.sock.mkdir()
        self._user, self.proc = {}, None
        if root:  # postgres will not run as root: the server's files belong to nobody
            pw = pwd.getpwnam("nobody")
            self._user = {"user": pw.pw_uid, "group": pw.pw_gid}
            os.chmod(self.base, 0o755)
            for p in (self.base, self.sock):
                os.chown(p, pw.pw_uid, pw.pw_gid)
        done = subprocess.run([initdb, "-D", str(self.data), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8",
                               "--no-sync"], capture_output=True, text=True, **self._user)
        if done.returncode:
            self.stop()
            raise RuntimeError(f"initdb failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")
        self.proc = None
        last = ""
        for _ in range(5):  # a port another process takes between the probe and the bind: next one
            self.port = _free_port()
            log = open(self.base / f"server-{self.port}.log", "w")
            self._cmd = [postgres, "-D", str(self.data), "-p", str(self.port), "-k", str(self.sock),
                         "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "max_connections=200",
                         "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
            self.proc = subprocess.Popen(self._cmd, stdout=log, stderr=subprocess.STDOUT, **self._user)
            if self._wait_ready(30.0):
                return
            last = (self.base / f"server-{self.port}.log").read_text()
            self._kill()
        self.stop()
        raise RuntimeError(f"PostgreSQL did not start:\n{last[-2000:]}")

    def _wait_ready(self, timeout: float) -> bool:
        import psycopg

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False  # e.g. could not bind the port
            try:
                psycopg.connect(self.url("postgres"), connect_timeout=2).close()
                return True
            except psycopg.OperationalError:
                time.sleep(0.1)
        return False

    def url(self, dbname: str) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{dbname}"

    def create_db(self, prefix: str = "t") -> str:
        """A new empty database; returns its URL."""
        import psycopg

        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def pause(self) -> None:
        """Stop the server, keeping its data (the line's database goes away)."""
        self._kill()

    def resume(self) -> None:
        """Start it again on the same port with the same data."""
        log = open(self.base / f"server-{self.port}.log", "a")
        self.proc = subprocess.Popen(self._cmd, stdout=log, stderr=subprocess.STDOUT, **self._user)
        if not self._wait_ready(30.0):
            raise RuntimeError("PostgreSQL did not start again: " + (self.base / f"server-{self.port}.log").read_text()[-1000:])

    def _kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # fast shutdown: open client sessions are cut
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def stop(self) -> None:
        self._kill()
        shutil.rmtree(self.base, ignore_errors=True)
