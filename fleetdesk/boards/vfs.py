"""Per-device files in the littlefs ``vfs`` partition image (adds /config.json, /certs/*).

Prefers the shared image helper (fleetdesk.boards.fsimage); falls back to littlefs-python
with MicroPython's parameters so a station still works while that module evolves.
"""

from __future__ import annotations

import json

BLOCK_SIZE = 4096
_LFS_ARGS = dict(read_size=32, prog_size=32, lookahead_size=32, block_cycles=100)


def add_files(image: bytes, files: dict[str, bytes]) -> bytes:
    """Return ``image`` (a littlefs partition image) with ``files`` written into it.

    An erased region (all 0xFF) is formatted first. Parent directories are created.
    """
    try:
        from fleetdesk.boards import fsimage
    except ImportError:
        fsimage = None
    if fsimage is not None and hasattr(fsimage, "add_files"):
        if image.count(0xFF) == len(image):
            return bytes(fsimage.build_image(files, len(image)))
        return bytes(fsimage.add_files(image, files))
    return _add_files_lfs(image, files)


def read_files(image: bytes) -> dict[str, bytes]:
    """All files in a littlefs image, path -> bytes (for checks and identity backups)."""
    try:
        from fleetdesk.boards import fsimage
    except ImportError:
        fsimage = None
    if fsimage is not None and hasattr(fsimage, "read_image"):
        return fsimage.read_image(image)
    import littlefs

    fs = _mount(image, littlefs)
    out: dict[str, bytes] = {}
    for root, _dirs, names in fs.walk("/"):
        for n in names:
            p = (root.rstrip("/") + "/" + n) if root != "/" else "/" + n
            with fs.open(p, "rb") as f:
                out[p] = f.read()
    return out


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
    except Exception:  # not littlefs, truncated, or missing files: no identity
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


def _mount(image: bytes, littlefs):
    count = len(image) // BLOCK_SIZE
    ctx = littlefs.UserContext(buffsize=len(image))
    ctx.buffer[:] = image
    fs = littlefs.LittleFS(context=ctx, block_size=BLOCK_SIZE, block_count=count, mount=False, **_LFS_ARGS)
    if image.count(0xFF) == len(image):
        fs.format()
    fs.mount()
    return fs


def _add_files_lfs(image: bytes, files: dict[str, bytes]) -> bytes:
    import littlefs

    fs = _mount(image, littlefs)
    for path, data in files.items():
        path = "/" + path.lstrip("/")
        parts = path.strip("/").split("/")[:-1]
        cur = ""
        for d in parts:
            cur += "/" + d
            try:
                fs.mkdir(cur)
            except littlefs.errors.LittleFSError as exc:
                if exc.code != littlefs.errors.LittleFSError.Error.LFS_ERR_EXIST:
                    raise
        with fs.open(path, "wb") as f:
            f.write(data)
    fs.unmount()
    return bytes(fs.context.buffer)
