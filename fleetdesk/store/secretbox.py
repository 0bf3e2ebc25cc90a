"""The station's data key: secrets kept by the station (identity backups read from boards,
pre-minted private keys of the offline pool) are encrypted at rest with it.

One Fernet key (AES-128-CBC + HMAC-SHA256, ``cryptography``) in a 0600 file, by default
``station.key`` in the app data dir, apart from the databases: a database copied somewhere
else carries ciphertext only. The key is created on first use and never replaced: a sealed
value names the key it was made with (a SHA-256 fingerprint, never the key), so a missing or
different key file is reported by name instead of failing later as a bare ``InvalidToken``.

Sealed format: ``b"fdsb1:" + <16 hex key id> + b":" + <Fernet token>``. Values sealed by
older versions (bare Fernet tokens, e.g. the pool's ``certpool.key``) still open with the
legacy key files given to `SecretBox`.

Also here: `private_db_file`, which makes a SQLite database (+ ``-wal``/``-shm``) 0600 before
``sqlite3.connect`` creates it, so the database files holding sealed data and journals are
readable by the owner only.
"""

from __future__ import annotations

import hashlib
import os
import threading
import uuid
from pathlib import Path
from typing import Iterable

from fleetdesk.errors import FleetdeskError
from fleetdesk.paths import data_dir, write_private

KEY_FILE = "station.key"
PREFIX = b"fdsb1:"
FORMAT = "fdsb1"  # the row format production.sqlite3 records for sealed backups
_ID_LEN = 16
_CREATE_LOCK = threading.Lock()


class SecretKeyError(FleetdeskError):
    """The station data key needed to open (or keep) encrypted data is missing, different or
    damaged. The encrypted data itself is kept untouched."""


def default_key_path() -> Path:
    """``station.key`` in the app data dir (FLEETDESK_DATA_DIR overrides the dir)."""
    return data_dir() / KEY_FILE


def key_id(key: bytes) -> str:
    """A key's fingerprint (16 hex digits of its SHA-256): names a key without revealing it."""
    return hashlib.sha256(key.strip()).hexdigest()[:_ID_LEN]


def is_sealed(blob: bytes) -> bool:
    """Whether ``blob`` was made by `SecretBox.seal`."""
    return bytes(blob[:len(PREFIX)]) == PREFIX


def sealed_key_id(blob: bytes) -> str | None:
    """The id of the key a sealed value needs (None for anything else)."""
    if not is_sealed(blob):
        return None
    return bytes(blob[len(PREFIX):len(PREFIX) + _ID_LEN]).decode("ascii", "replace")


class SecretBox:
    """Encrypt/decrypt bytes with the station data key.

    Args:
        key_path: the key file (default: ``station.key`` in the app data dir).
        legacy: older key files that may have sealed bare Fernet tokens (tried when opening
            those only; never used to seal).
    """

    def __init__(self, key_path: Path | str | None = None, *, legacy: Iterable[Path | str] = ()) -> None:
        self.key_path = Path(key_path) if key_path else default_key_path()
        self.legacy = [Path(p) for p in legacy]

    # --- the key ------------------------------------------------------------------------
    def has_key(self) -> bool:
        """Whether the key file exists (nothing is created)."""
        return self.key_path.exists()

    def key_id(self) -> str | None:
        """The fingerprint of the key on file (None when there is none yet)."""
        key = self._load(self.key_path, required=False)
        return key_id(key) if key else None

    def _load(self, path: Path, *, required: bool) -> bytes | None:
        # read on every use (44 bytes), never cached: sealing with a key whose file has gone
        # would make data no restarted station can open
        try:
            key = path.read_bytes().strip()
        except FileNotFoundError:
            if required:
                raise self._missing(path, "the data it protects cannot be read") from None
            return None
        except OSError as exc:
            raise SecretKeyError(f"cannot read the station data key {path} ({exc})",
                                 "check the file's owner and permissions (it must be readable by this user, "
                                 "mode 0600)") from exc
        try:
            from cryptography.fernet import Fernet

            Fernet(key)
        except ValueError as exc:
            raise SecretKeyError(f"the station data key {path} is damaged (not a Fernet key)",
                                 "put back the station.key file from a backup of this station; the encrypted "
                                 "data is kept") from exc
        if os.name == "posix" and path.stat().st_mode & 0o077:
            try:
                os.chmod(path, 0o600)  # a key copied back with loose permissions: tighten it
            except OSError:
                pass
        return key

    def _missing(self, path: Path, consequence: str) -> SecretKeyError:
        return SecretKeyError(
            f"the station data key {path} is missing: {consequence}",
            f"copy station.key (mode 0600) from the station that made this data into {path.parent}; "
            "the encrypted data is kept, nothing was deleted")

    def ensure_key(self, *, create: bool = True) -> bytes:
        """Load the key, creating it (0600) when missing and ``create`` is true.

        Creation never replaces a key file that appears meanwhile (another thread or process
        made one first: that one is used).

        Raises:
            SecretKeyError: missing and ``create`` is false, unreadable or damaged.
        """
        key = self._load(self.key_path, required=False)
        if key is not None:
            return key
        if not create:
            raise self._missing(self.key_path, "data encrypted with it is on file, so no new key is made "
                                "(it would hide that data)")
        from cryptography.fernet import Fernet

        with _CREATE_LOCK:
            key = self._load(self.key_path, required=False)
            if key is not None:
                return key
            tmp = self.key_path.with_name(f".{self.key_path.name}.{uuid.uuid4().hex}.new")
            write_private(tmp, Fernet.generate_key())
            try:
                os.link(tmp, self.key_path)  # publish without clobbering a key made meanwhile
            except FileExistsError:
                pass
            except OSError:  # no hard links on this file system
                if not self.key_path.exists():
                    os.replace(tmp, self.key_path)
            finally:
                tmp.unlink(missing_ok=True)
        key = self._load(self.key_path, required=True)
        assert key is not None  # required=True raises instead of answering None
        return key

    # --- sealing --------------------------------------------------------------------------
    def seal(self, data: bytes, *, create: bool = True) -> bytes:
        """Encrypt ``data`` with the station key (created 0600 on first use if ``create``).

        Raises:
            SecretKeyError: no key and ``create`` is false (callers pass false when data
                sealed with a key now missing exists, so a new key never hides it).
        """
        from cryptography.fernet import Fernet

        key = self.ensure_key(create=create)
        return PREFIX + key_id(key).encode() + b":" + Fernet(key).encrypt(bytes(data))

    def open(self, blob: bytes, what: str = "the encrypted data") -> bytes:
        """Decrypt a value made by `seal` (or a bare Fernet token from a legacy key).

        Args:
            blob: the sealed value.
            what: names the value in error messages (e.g. "identity backup #3").

        Raises:
            SecretKeyError: the key it needs is missing or different, or the value is damaged;
                the message names the key file and its expected fingerprint.
        """
        from cryptography.fernet import Fernet, InvalidToken

        blob = bytes(blob)
        if is_sealed(blob):
            want = sealed_key_id(blob)
            token = blob[len(PREFIX) + _ID_LEN + 1:]
            key = self._load(self.key_path, required=False)
            if key is None:
                raise self._missing(self.key_path, f"{what} is encrypted with station key {want}")
            have = key_id(key)
            if have != want:
                raise SecretKeyError(
                    f"{what} is encrypted with station key {want}, but {self.key_path} holds key {have}",
                    f"put the station.key of the station that made it (fingerprint {want}) in {self.key_path.parent} "
                    "(keep a copy of the current one first); the encrypted data is kept")
            try:
                return Fernet(key).decrypt(token)
            except InvalidToken as exc:
                raise SecretKeyError(f"{what} does not decrypt with station key {have}: it is damaged",
                                     "restore the database from a backup") from exc
        paths = [self.key_path, *self.legacy]
        keys = [k for k in (self._load(p, required=False) for p in paths) if k]
        if not keys:
            raise self._missing(self.key_path, f"{what} is encrypted with a key that is not on this machine")
        for key in keys:
            try:
                return Fernet(key).decrypt(blob)
            except InvalidToken:
                continue
        raise SecretKeyError(f"{what} does not decrypt with the key files {', '.join(str(p) for p in paths)}",
                             "put back the key file of the station that made it; the encrypted data is kept")


def private_db_file(path: Path | str) -> Path:
    """Make a SQLite database file owner-only (0600) before ``sqlite3.connect`` opens it.

    A new database is created empty with mode 0600 (SQLite then gives its ``-wal`` and
    ``-shm`` files the database's mode); an existing one and its ``-wal``/``-shm`` files are
    tightened to 0600 when this user owns them. Returns ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass
    if os.name == "posix":
        for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            try:
                if p.stat().st_mode & 0o077:
                    os.chmod(p, 0o600)
            except OSError:  # absent, or owned by another user: left as is
                pass
    return path
