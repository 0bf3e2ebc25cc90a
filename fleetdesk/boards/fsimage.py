"""The MicroPython ``vfs`` filesystem image (littlefs v2), built and read with littlefs-python.

Parameters match MicroPython's ``vfs.VfsLfs2`` on ESP32 (``extmod/vfs_lfsx.c`` defaults):
block size = flash sector (4096), read/prog size 32, lookahead 32, cache 128, name_max
255, so a real board mounts the image we write.
"""

from __future__ import annotations

from littlefs import LittleFS, UserContext

from fleetdesk.errors import BoardError

BLOCK_SIZE = 4096
LFS_PARAMS: dict = dict(block_size=BLOCK_SIZE, read_size=32, prog_size=32, lookahead_size=32,
                  cache_size=128, name_max=255, block_cycles=100)


class FsImageError(BoardError):
    """A vfs image cannot be built or mounted."""


def _norm(path: str) -> str:
    path = "/" + path.strip().lstrip("/")
    if ".." in path.split("/"):
        raise FsImageError(f"Bad path {path!r} for the device filesystem", "use absolute paths without '..'")
    return path


def _fs(image: bytearray) -> LittleFS:
    if len(image) % BLOCK_SIZE:
        raise FsImageError(f"Image size {len(image)} is not a multiple of {BLOCK_SIZE}",
                           "use the vfs partition size")
    ctx = UserContext(buffer=image)
    return LittleFS(context=ctx, block_count=len(image) // BLOCK_SIZE, mount=False, **LFS_PARAMS)


def _write_files(fs: LittleFS, files: dict[str, bytes]) -> None:
    for path, data in sorted(files.items()):
        path = _norm(path)
        parent = path.rsplit("/", 1)[0]
        if parent:
            fs.makedirs(parent, exist_ok=True)
        with fs.open(path, "wb") as fh:
            fh.write(bytes(data))


def build_image(files: dict[str, bytes], size: int) -> bytes:
    """A fresh littlefs image of ``size`` bytes holding ``files`` (path -> bytes)."""
    image = bytearray(b"\xff" * size)
    fs = _fs(image)
    fs.format()
    fs.mount()
    _write_files(fs, files)
    fs.unmount()
    return bytes(image)


def read_image(image: bytes) -> dict[str, bytes]:
    """Every file in a littlefs image, as path -> bytes.

    Raises:
        FsImageError: the image holds no mountable littlefs (erased, corrupt, other fs).
    """
    buf = bytearray(image)
    fs = _fs(buf)
    try:
        fs.mount()
    except Exception as exc:  # littlefs raises LittleFSError(-84 corrupt) etc.
        raise FsImageError("The vfs partition holds no littlefs filesystem",
                           "flash a bundle built with `fleetdesk firmware build`") from exc
    out: dict[str, bytes] = {}
    for root, _dirs, names in fs.walk("/"):
        for name in names:
            path = (root.rstrip("/") + "/" + name) if root != "/" else "/" + name
            with fs.open(path, "rb") as fh:
                out[path] = fh.read()
    fs.unmount()
    return out


def add_files(image: bytes, files: dict[str, bytes], remove: list[str] | tuple = ()) -> bytes:
    """Return ``image`` with ``files`` written (replacing same paths) and ``remove`` deleted.

    This is how the flash station adds /config.json and /certs/* per device.
    """
    buf = bytearray(image)
    fs = _fs(buf)
    try:
        fs.mount()
    except Exception as exc:
        raise FsImageError("Cannot add files: the image holds no littlefs filesystem",
                           "build the image with build_image() first") from exc
    for path in remove:
        try:
            fs.remove(_norm(path))
        except FileNotFoundError:
            pass
        except Exception:  # noqa: BLE001 - littlefs maps ENOENT to its own error on some versions
            pass
    _write_files(fs, files)
    fs.unmount()
    return bytes(buf)
