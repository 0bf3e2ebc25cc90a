# Differences between MicroPython (ESP32 and the unix port) and CPython, in one place.
#
# Everything else in fd/ is written in the intersection of both: asyncio, json, socket,
# ssl, hashlib, binascii, time, os.
import sys
import os
import time
import json
import binascii
import hashlib

IS_MPY = sys.implementation.name == "micropython"

try:
    import asyncio
except ImportError:  # very old MicroPython
    import uasyncio as asyncio  # noqa: F401

# Seconds between 1970-01-01 and 2000-01-01: MicroPython ports with a 2000 epoch.
_EPOCH_OFFSET = 946684800 if time.gmtime(0)[0] == 2000 else 0


def ticks_ms():
    """Monotonic milliseconds (wrapping on MicroPython; use ticks_diff)."""
    if IS_MPY:
        return time.ticks_ms()
    return int(time.monotonic() * 1000)  # pyright: ignore[reportAttributeAccessIssue] - CPython path: IS_MPY is false


def ticks_diff(a, b):
    """a - b in milliseconds, wrap-safe."""
    if IS_MPY:
        return time.ticks_diff(a, b)
    return a - b


def epoch():
    """Unix time in whole seconds (0 if the clock was never set)."""
    return int(time.time()) + _EPOCH_OFFSET


def epoch_ms():
    if not IS_MPY:
        return int(time.time() * 1000)
    return epoch() * 1000


def sleep_ms(ms):
    """Awaitable sleep of `ms` milliseconds."""
    return asyncio.sleep(ms / 1000)


class _EventFlag:
    """CPython stand-in for asyncio.ThreadSafeFlag: set() wakes one wait(), which clears it."""

    def __init__(self):
        self._ev = asyncio.Event()

    def set(self):
        self._ev.set()

    def clear(self):
        self._ev.clear()

    async def wait(self):
        await self._ev.wait()
        self._ev.clear()


def flag():
    """A flag an interrupt handler may set() and a task awaits (ThreadSafeFlag on MicroPython)."""
    if hasattr(asyncio, "ThreadSafeFlag"):
        return asyncio.ThreadSafeFlag()
    return _EventFlag()


def sha256_hex(data=None):
    h = hashlib.sha256()
    if data:
        h.update(data)
    return h


def hexdigest(h):
    return binascii.hexlify(h.digest()).decode()


# ---------------------------------------------------------------- memory
# A stock ESP32 gives the firmware a 112 KB GC heap (firmware/README.md "Heap"): collect at
# the known peaks (before BLE starts, before each TLS connect, after a large message,
# before OTA) so one big allocation finds a free block, and keep the low-water mark.
_low = [-1]


def collect():
    """gc.collect(); remembers the lowest free heap seen just before (see heap_info)."""
    try:
        import gc

        free = gc.mem_free()
        if _low[0] < 0 or free < _low[0]:
            _low[0] = free
        gc.collect()
    except (ImportError, AttributeError):  # CPython: no GC heap to speak of
        pass


def mem_free():
    """Free GC heap after a collect (bytes; -1 off MicroPython)."""
    try:
        import gc

        gc.collect()
        free = gc.mem_free()
    except (ImportError, AttributeError):
        return -1
    if _low[0] < 0 or free < _low[0]:
        _low[0] = free
    return free


def unload(name):
    """Drop module `name` (e.g. "fd.rpc") after use: its code leaves the GC heap at the next
    collect and the next import loads it again (MicroPython only; CPython keeps it)."""
    if not IS_MPY:
        return
    mod = sys.modules.pop(name, None)
    pkg, _, attr = name.rpartition(".")
    parent = sys.modules.get(pkg) if pkg else None
    if mod is not None and parent is not None and getattr(parent, attr, None) is mod:
        delattr(parent, attr)  # `from fd import x` bound it on the package too


def loads(buf):
    """json.loads of bytes, str or a memoryview (MQTT payloads are views into the packet)."""
    if not IS_MPY and isinstance(buf, memoryview):
        buf = bytes(buf)
    if len(buf) >= 1024:
        collect()  # the parser wants a block as large as the biggest string: make room first
    return json.loads(buf)


def text(buf, limit=200):
    """The first `limit` bytes of a payload as text (for log lines)."""
    b = bytes(buf[:limit])
    try:
        return b.decode()
    except UnicodeError:
        return repr(b)


# ---------------------------------------------------------------- TLS

def pem_to_der(pem):
    """First PEM block of `pem` (str or bytes) as DER bytes."""
    if isinstance(pem, bytes):
        pem = pem.decode()
    lines = []
    inside = False
    for line in pem.split("\n"):
        line = line.strip()
        if line.startswith("-----BEGIN"):
            inside = True
        elif line.startswith("-----END"):
            break
        elif inside and line:
            lines.append(line)
    if not lines:
        raise ValueError("no PEM block")
    return binascii.a2b_base64("".join(lines))


def der_to_pem(der, label):
    b64 = binascii.b2a_base64(der).decode().replace("\n", "")
    body = "\n".join(b64[i:i + 64] for i in range(0, len(b64), 64))
    return "-----BEGIN %s-----\n%s\n-----END %s-----\n" % (label, body, label)


# ---------------------------------------------------------------- files

def join(root, path):
    """`path` (device-absolute, e.g. "/config.json") under `root` ("" = current dir)."""
    path = path.lstrip("/")
    if not root:
        return path or "."
    if root.endswith("/"):
        return root + path
    return root + "/" + path if path else root


def exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def is_dir(path):
    try:
        return os.stat(path)[0] & 0x4000 != 0
    except OSError:
        return False


def makedirs(path):
    cur = "/" if path.startswith("/") else ""
    for p in path.split("/"):
        if not p:
            continue
        cur = cur + p if (not cur or cur.endswith("/")) else cur + "/" + p
        if not exists(cur):
            os.mkdir(cur)


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def write_bytes(path, data):
    """Write atomically (temp file + rename) so a reset never leaves half a file."""
    d = path.rsplit("/", 1)[0] if "/" in path else ""
    if d:
        makedirs(d)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    rename(tmp, path)


def rename(tmp, path):
    """Move tmp over path (also where rename does not replace an existing file)."""
    try:
        os.rename(tmp, path)
    except OSError:
        os.remove(path)
        os.rename(tmp, path)


def write_private(path, data):
    """Like write_bytes, owner-only where the filesystem has permissions (off-board)."""
    write_bytes(path, data)
    chmod = getattr(os, "chmod", None)
    if chmod is not None:
        try:
            chmod(path, 0o600)
        except OSError:
            pass


def read_json(path):
    with open(path) as f:
        return json.loads(f.read())


def write_json(path, obj):
    write_bytes(path, json.dumps(obj).encode())


def remove_tree(path):
    if is_dir(path):
        for name in os.listdir(path):
            remove_tree(path + "/" + name)
        os.rmdir(path)
    elif exists(path):
        os.remove(path)


def list_dir(path):
    """[(name, is_dir, size)] of a directory."""
    out = []
    for name in os.listdir(path):
        st = os.stat(path.rstrip("/") + "/" + name if path != "/" else "/" + name)
        out.append((name, st[0] & 0x4000 != 0, st[6]))
    return out
