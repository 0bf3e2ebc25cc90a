# OTA: HTTPS download (server verified with the device CA), SHA-256 check, write the
# inactive slot, switch, and let the caller reboot.
#
# Off-board (and for MicroPython app updates) the image is a file set, "FDPKG1":
#   b"FDPKG1\n" then, per file, b"<path>\n<size>\n" + <size bytes>, then b"END\n".
# It is unpacked into /ota/<slot>/ (slot a|b, the one not running) and /ota/boot.json
# {"slot", "version"} is switched to it; main.py puts that slot first on the module path.
# On a real ESP32 a raw app .bin (magic 0xE9) goes to the next OTA partition
# (esp32.Partition.get_next_update + set_boot); the app marks it valid once online.
import json

from fd import compat
from fd.compat import asyncio

MAGIC = b"FDPKG1\n"
MAX_IMAGE = 4 * 1024 * 1024
CHUNK = 1024  # copy buffer: a fragmented 112 KB heap has few larger free blocks during an OTA


def parse_url(url):
    if not isinstance(url, str) or not url.startswith("https://"):
        raise ValueError("only https:// URLs are accepted, got %r" % (url,))
    rest = url[8:]
    host, _, path = rest.partition("/")
    port = 443
    if ":" in host:
        host, p = host.rsplit(":", 1)
        port = int(p)
    return host, port, "/" + path


async def download(dev, url, dest, timeout_ms=60000, buf=None):
    """Stream `url` into file `dest`. Returns (sha256 hex, size). Raises OSError/ValueError."""
    host, port, path = parse_url(url)
    from fd.mqtt import open_tls

    if buf is None:
        buf = bytearray(CHUNK)
    mv = memoryview(buf)
    # the MQTT link's context verifies with the same device CA: reuse it (a second one is a
    # 3 KB block the heap may not have during an OTA); its client cert is only sent if asked
    ctx = getattr(dev, "_ctx", None)
    if ctx is None:
        from fd import tls

        ctx = tls.tls_context(dev.config.ca_der())
    r, w = await open_tls(host, port, ctx, timeout_ms)
    try:
        hosthdr = host if port == 443 else "%s:%d" % (host, port)
        w.write(("GET %s HTTP/1.0\r\nHost: %s\r\nUser-Agent: fleetdesk-fw\r\nConnection: close\r\n\r\n"
                 % (path, hosthdr)).encode())
        await w.drain()
        status = await asyncio.wait_for(r.readline(), timeout_ms / 1000)
        parts = status.split(None, 2)
        if len(parts) < 2 or not parts[1].isdigit():
            raise OSError("bad HTTP status line %r" % status[:60])
        code = int(parts[1])
        length = None
        while True:
            line = await asyncio.wait_for(r.readline(), timeout_ms / 1000)
            if not line or line in (b"\r\n", b"\n"):
                break
            k, _, v = line.decode().partition(":")
            if k.strip().lower() == "content-length":
                length = int(v.strip())
        if code != 200:
            raise OSError("HTTP %d from %s" % (code, host))
        if length is not None and length > MAX_IMAGE:
            raise OSError("image of %d bytes is larger than %d" % (length, MAX_IMAGE))
        h = compat.sha256_hex()
        size = 0
        with open(dest, "wb") as f:
            while length is None or size < length:
                try:
                    if hasattr(r, "readinto"):  # MicroPython: into the one buffer
                        chunk = mv[:await asyncio.wait_for(r.readinto(buf), timeout_ms / 1000) or 0]
                    else:
                        chunk = await asyncio.wait_for(r.read(CHUNK), timeout_ms / 1000)
                except OSError:
                    chunk = b""
                if not chunk:
                    break
                h.update(chunk)
                f.write(chunk)
                size += len(chunk)
                if size > MAX_IMAGE:
                    raise OSError("image larger than %d bytes" % MAX_IMAGE)
        if length is not None and size < length:
            raise OSError("truncated download: got %d of %d bytes" % (size, length))
        return compat.hexdigest(h), size
    finally:
        try:
            w.close()
        except Exception:
            pass


def unpack(src, dest_dir, buf=None):
    """Unpack an FDPKG file into dest_dir. Returns the number of files. Raises ValueError."""
    compat.remove_tree(dest_dir)
    compat.makedirs(dest_dir)
    n = 0
    if buf is None:  # one buffer for every file: a file is never held whole in the heap
        buf = bytearray(CHUNK)
    with open(src, "rb") as f:
        if f.read(len(MAGIC)) != MAGIC:
            raise ValueError("not a Fleetdesk file-set package")
        while True:
            name = f.readline().strip().decode()
            if name == "END":
                return n
            if not name:
                raise ValueError("package ends early (no END marker)")
            if name.startswith("/") or ".." in name.split("/"):
                raise ValueError("bad path in package: %r" % name)
            size = int(f.readline())
            _copy(f, dest_dir + "/" + name, size, buf)
            n += 1


def _copy(f, path, size, buf):
    """Copy `size` bytes from the open file `f` to `path` (atomic), CHUNK bytes at a time."""
    d = path.rsplit("/", 1)[0]
    compat.makedirs(d)
    mv = memoryview(buf)
    tmp = path + ".tmp"
    with open(tmp, "wb") as out:
        left = size
        while left:
            n = f.readinto(mv[:left] if left < len(buf) else mv)
            if not n:
                raise ValueError("package ends inside %s" % path.rsplit("/", 1)[-1])
            out.write(mv[:n])
            left -= n
    compat.rename(tmp, path)


def install_app_image(src):
    """Write an ESP app image (.bin, magic 0xE9) to the next OTA partition and boot it next.

    Real boards only; off-board the esp32 shim has no OTA partition (OSError)."""
    import esp32

    part = esp32.Partition(esp32.Partition.RUNNING).get_next_update()  # pyright: ignore[reportArgumentType] - the stubs type id as str; the firmware also takes BOOT/RUNNING
    bs = 4096
    buf = bytearray(bs)
    block = 0
    with open(src, "rb") as f:
        while True:
            n = f.readinto(buf)
            if not n:
                break
            if n < bs:
                for i in range(n, bs):
                    buf[i] = 0xFF
            part.writeblocks(block, buf)  # block-aligned form erases first
            block += 1
    part.set_boot()
    return block


def image_kind(src):
    with open(src, "rb") as f:
        head = f.read(len(MAGIC))
    if head == MAGIC:
        return "fileset"
    if head[:1] == b"\xe9":
        return "app"
    return None


def boot_info(dev):
    try:
        return compat.read_json(dev.path("/ota/boot.json"))
    except (OSError, ValueError):
        return {}


def inactive_slot(dev):
    return "b" if boot_info(dev).get("slot") == "a" else "a"


async def update(dev, url, sha256, version):
    """Download, verify and install `version`. (True, "") or (False, reason); on failure the
    running version and boot pointer are untouched."""
    old_mode = dev.mode
    dev.set_mode("ota")
    tmp = dev.path("/ota/download.bin")
    compat.collect()  # a second TLS session and the copy buffers come next
    try:
        return await _update(dev, url, sha256, version, tmp)
    except MemoryError as exc:
        compat.collect()
        return False, "out of memory: %s (GC heap free %d bytes after a collect)" % (exc, compat.mem_free())
    finally:
        try:
            compat.remove_tree(tmp)
        except OSError:
            pass
        if dev.mode == "ota":
            dev.set_mode(old_mode)


async def _update(dev, url, sha256, version, tmp):
    buf = bytearray(CHUNK)  # one copy buffer for download and unpack, taken right after the collect
    if not isinstance(sha256, str) or len(sha256) != 64:
        return False, "sha256 must be 64 hex characters"
    compat.makedirs(dev.path("/ota"))
    dev.log("info", "OTA %s: downloading %s" % (version, url))
    try:
        digest, size = await download(dev, url, tmp, buf=buf)
    except (OSError, ValueError, asyncio.TimeoutError) as exc:
        return False, "download failed: %s" % (exc or exc.__class__.__name__)
    if digest != sha256.lower():
        return False, "sha256 mismatch: expected %s, got %s" % (sha256.lower(), digest)
    kind = image_kind(tmp)
    if kind == "app":
        try:
            n = install_app_image(tmp)
        except (OSError, ImportError, AttributeError) as exc:
            return False, "install failed: no OTA app partition to write (%s)" % exc
        slot = "next app partition"
    elif kind == "fileset":
        slot = inactive_slot(dev)
        try:
            n = unpack(tmp, dev.path("/ota/" + slot), buf)
        except (OSError, ValueError, MemoryError) as exc:
            try:  # never leave a half-written slot behind
                compat.remove_tree(dev.path("/ota/" + slot))
            except OSError:
                pass
            if isinstance(exc, MemoryError):
                raise
            return False, "install failed: %s" % exc
        compat.write_json(dev.path("/ota/boot.json"), {"slot": slot, "version": version,
                                                       "previous": dev.settings["firmware_version"]})
    else:
        return False, "install failed: unknown image format (neither a file set nor an ESP app image)"
    dev.settings.update(firmware_version=version)
    dev.log("info", "OTA %s: %d bytes, %d files/blocks in %s; rebooting" % (version, size, n, slot))
    return True, ""
