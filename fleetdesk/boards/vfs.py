"""Per-device files in the littlefs ``vfs`` partition image (adds /config.json, /certs/*),
and the identity a board carries in it. The littlefs work itself (MicroPython's VfsLfs2
parameters) is :mod:`fleetdesk.boards.fsimage`'s.
"""

from __future__ import annotations

import json

from fleetdesk.boards import fsimage


def add_files(image: bytes, files: dict[str, bytes]) -> bytes:
    """Return ``image`` (a littlefs partition image) with ``files`` written into it.

    An erased region (all 0xFF) is formatted first. Parent directories are created.
    """
    if image.count(0xFF) == len(image):
        return fsimage.build_image(files, len(image))
    return fsimage.add_files(image, files)


def read_files(image: bytes) -> dict[str, bytes]:
    """All files in a littlefs image, path -> bytes (for checks and identity backups)."""
    return fsimage.read_image(image)


IDENTITY_PATHS = ("/config.json", "/certs/ca.der", "/certs/cert.der", "/certs/key.der")


def identity_files(image: bytes, size: int | None = None) -> dict[str, bytes] | None:
    """A board's identity files (/config.json, /certs/*.der) from a vfs image read back.

    Args:
        image: the partition bytes, or a prefix of them (the rest is taken as erased).
        size: the partition size (default: ``len(image)``).

    Returns:
        path -> bytes, or None when the image holds no complete, well-formed identity
        (erased, not littlefs, or a file lies beyond the bytes read).
    """
    size = size or len(image)
    padded = bytes(image[:size]) + b"\xff" * (size - len(image))
    if padded.count(0xFF) == len(padded):
        return None
    try:
        files = read_files(padded)
        config = json.loads(files["/config.json"])
        from cryptography import x509

        x509.load_der_x509_certificate(files["/certs/cert.der"])
    except Exception:  # noqa: BLE001 - not littlefs, truncated, or missing files: no identity
        return None
    if not config.get("thing_name") or not all(files.get(p) for p in IDENTITY_PATHS):
        return None
    return {p: files[p] for p in IDENTITY_PATHS}


def pack_files(files: dict[str, bytes]) -> bytes:
    """Files as one JSON document (path -> base64): an identity backup of a few KB."""
    import base64

    return json.dumps({p: base64.b64encode(d).decode() for p, d in files.items()}).encode()


def unpack_files(data: bytes) -> dict[str, bytes] | None:
    """The files of `pack_files` (None when ``data`` is not such a document)."""
    import base64

    try:
        return {p: base64.b64decode(d) for p, d in json.loads(data).items()}
    except (ValueError, AttributeError, TypeError):
        return None
