"""Corrupt or partial sandbox state is refused, never replaced; ``--reset`` moves it aside.

A state dir that already holds sandbox state (a registry, or credentials next to a CA) must
hold all of it: ``registry.sqlite`` (a non-empty SQLite file), ``credentials.json`` (the
SigV4 keys and the broker login) and the CA (``ca/ca.pem`` + ``ca/ca.key``; every device
certificate chains to it). A missing, empty or unreadable one stops ``sandbox up`` with a
message naming the file and both ways out: restore it, or ``sandbox up --reset``. Silently
making a new one would start an empty registry (every device refused) or new keys (every
client refused) with nothing said. The server certificate/key may be missing (they are
re-issued from the CA, harmless), but not garbage.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from fleetdesk.errors import SandboxError

RESET_WORD = "RESET"
_SQLITE_MAGIC = b"SQLite format 3\x00"
_CRED_KEYS = ("aws_access_key_id", "aws_secret_access_key", "internal_password", "account_id")


def _fix(state_dir: Path) -> str:
    return (f"restore it from a backup of {state_dir}, or start afresh with `fleetdesk sandbox up --reset` "
            "(moves the whole state dir aside; device identities must then be made again)")


def _problem(path: Path, check) -> str | None:
    try:
        if not path.exists():
            return "is missing"
        data = path.read_bytes()
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    if not data.strip():
        return "is empty"
    return check(data)


def _sqlite(data: bytes) -> str | None:
    return None if data.startswith(_SQLITE_MAGIC) else "is not an SQLite database"


def _credentials(data: bytes) -> str | None:
    try:
        doc = json.loads(data)
    except ValueError as exc:
        return f"is not JSON ({exc})"
    missing = [k for k in _CRED_KEYS if not isinstance(doc, dict) or not doc.get(k)]
    return f"lacks {', '.join(missing)}" if missing else None


def _pem_cert(data: bytes) -> str | None:
    from cryptography import x509

    try:
        x509.load_pem_x509_certificate(data)
    except ValueError as exc:
        return f"is not a PEM certificate ({exc})"
    return None


def _pem_key(data: bytes) -> str | None:
    from cryptography.hazmat.primitives import serialization

    try:
        serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        return f"is not a PEM private key ({exc})"
    return None


def has_state(state_dir: Path) -> bool:
    """True when the dir already holds sandbox state (not a fresh or half-made first start)."""
    return (state_dir / "registry.sqlite").exists() or (
        (state_dir / "credentials.json").exists() and (state_dir / "ca").is_dir())


def check_state(state_dir: Path) -> None:
    """Refuse a state dir with a missing, empty or unreadable part.

    Raises:
        SandboxError: naming the file and how to restore or reset it.
    """
    from fleetdesk.sandbox.ca import CA_CERT, CA_KEY, SERVER_CERT, SERVER_KEY

    ca = state_dir / "ca"
    optional = [(ca / SERVER_CERT, _pem_cert), (ca / SERVER_KEY, _pem_key)]
    required = [(state_dir / "registry.sqlite", _sqlite), (state_dir / "credentials.json", _credentials),
                (ca / CA_CERT, _pem_cert), (ca / CA_KEY, _pem_key)]
    established = has_state(state_dir)
    for path, check in required + optional:
        if not established and not path.exists():
            continue
        if (path, check) in optional and not path.exists():
            continue  # re-issued from the CA
        problem = _problem(path, check)
        if problem:
            raise SandboxError(f"{path} {problem}, next to the rest of the sandbox state in {state_dir}",
                               _fix(state_dir))


def reset_state(state_dir: Path, ask=input) -> Path | None:
    """Move ``state_dir`` aside after the user types :data:`RESET_WORD`; returns where it went.

    Returns:
        The new location, or None if there was nothing to move.

    Raises:
        SandboxError: the word was not typed (nothing is touched).
    """
    if not state_dir.exists() or not any(state_dir.iterdir()):
        return None
    try:
        answer = ask(f"This moves ALL sandbox state in {state_dir} (registry, certificates, keys) aside and "
                     f"starts an empty sandbox. Type {RESET_WORD} to continue: ")
    except EOFError:
        answer = ""
    if answer.strip() != RESET_WORD:
        raise SandboxError(f"not reset: {RESET_WORD} was not typed", f"nothing in {state_dir} was changed")
    aside = state_dir.with_name(f"{state_dir.name}.reset-{time.strftime('%Y%m%d-%H%M%S')}")
    state_dir.rename(aside)
    return aside
