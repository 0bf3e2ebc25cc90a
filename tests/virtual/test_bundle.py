"""Firmware bundles, partition tables and littlefs images (mountable by MicroPython)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from fleetdesk.boards import bundle, fsimage, partitions
from fleetdesk.paths import FIRMWARE_DIR, RESOURCES_DIR
from fleetdesk.virtual.runtime import micropython_binary

MOUNT_SCRIPT = """
import vfs, os, sys
class Dev:
    def __init__(self, data): self.data = data
    def readblocks(self, n, buf, off=0):
        s = n * 4096 + off
        buf[:] = self.data[s:s + len(buf)]
    def writeblocks(self, n, buf, off=0):
        s = n * 4096 + (off or 0)
        self.data[s:s + len(buf)] = buf
    def ioctl(self, op, arg):
        if op == 4: return len(self.data) // 4096
        if op == 5: return 4096
        if op == 6: return 0
        return 0
f = open(sys.argv[1], 'rb'); data = bytearray(f.read()); f.close()
vfs.mount(vfs.VfsLfs2(Dev(data), readsize=32, progsize=32, lookahead=32), '/flash')
print(sorted(os.listdir('/flash')), sorted(os.listdir('/flash/certs')))
print(open('/flash/config.json').read())
"""


def test_cli_build_and_inspect(tmp_path):
    out = tmp_path / "b"
    run = lambda *a: subprocess.run([sys.executable, "-m", "fleetdesk", "firmware", *a],  # noqa: E731
                                    capture_output=True, text=True, timeout=60)
    built = run("build", "--chip", "esp32s3", "-o", str(out), "--json")
    assert built.returncode == 0, built.stderr
    info = json.loads(built.stdout)
    assert info["chip"] == "esp32s3"
    assert "/main.py" in info["files"] and not any(f.startswith("/hal") for f in info["files"])
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["builds"][0]["chipFamily"] == "ESP32-S3"
    offsets = {p["path"]: p["offset"] for p in manifest["builds"][0]["parts"]}
    assert offsets == {"bootloader.bin": 0, "partition-table.bin": 0x8000, "app.bin": 0x10000, "vfs.bin": 0x200000}
    inspected = json.loads(run("inspect", str(out), "--json").stdout)
    assert [(p["name"], p["offset"]) for p in inspected["parts"]] == [(p["name"], p["offset"]) for p in info["parts"]]
    human = run("inspect", str(out)).stdout
    assert "partition-table" in human and "0x200000" in human
    # the merged image loads as a bundle too, with the vfs found through its partition table
    merged = next(out.glob("*-merged.bin"))
    assert bundle.load_bundle(merged).vfs_offset == 0x200000
    # a tampered part is caught
    (out / "app.bin").write_bytes(b"\xe9" + bytes(100))
    bad = run("inspect", str(out))
    assert bad.returncode == 1 and "SHA-256" in bad.stderr


def test_bundle_vfs_holds_firmware_and_device_files(tmp_path):
    b = bundle.build_bundle(tmp_path / "b", chip="esp32")
    files = fsimage.read_image(b.vfs.data)
    assert files["/main.py"] == (FIRMWARE_DIR / "main.py").read_bytes()
    assert not any(p.startswith("/hal") for p in files)
    dev = b.with_vfs_files({"/config.json": b'{"thing_name": "t1"}', "/certs/cert.der": b"\x30\x82"})
    dev_files = fsimage.read_image(dev.vfs.data)
    assert dev_files["/config.json"] == b'{"thing_name": "t1"}' and "/main.py" in dev_files
    assert [p.offset for p in dev.parts] == [p.offset for p in b.parts]
    with pytest.raises(bundle.BundleError):
        bundle.load_bundle(tmp_path / "b", chip="esp32c3")


def test_micropython_mounts_our_littlefs_image(tmp_path):
    image = fsimage.build_image({"/main.py": b"print(1)"}, 0x40000)
    image = fsimage.add_files(image, {"/config.json": b'{"port": 8883}', "/certs/ca.der": b"\x01"})
    (tmp_path / "vfs.bin").write_bytes(image)
    (tmp_path / "mount.py").write_text(MOUNT_SCRIPT)
    out = subprocess.run([micropython_binary(), "-X", "heapsize=4M", str(tmp_path / "mount.py"), str(tmp_path / "vfs.bin")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "['certs', 'config.json', 'main.py'] ['ca.der']" in out.stdout
    assert '{"port": 8883}' in out.stdout


def test_partition_table_roundtrip_and_errors():
    parts = partitions.from_csv((RESOURCES_DIR / "bundle" / "partitions-4MiB.csv").read_text())
    table = partitions.build(parts, 4 << 20)
    assert len(table) == partitions.TABLE_SIZE
    assert partitions.parse(table) == parts
    vfs = partitions.find(parts, "vfs")
    assert (vfs.offset, vfs.size, vfs.subtype_name) == (0x200000, 0x200000, "fat")
    corrupt = bytearray(table)
    corrupt[40] ^= 0xFF
    with pytest.raises(partitions.PartitionTableError, match="MD5"):
        partitions.parse(bytes(corrupt))
    with pytest.raises(partitions.PartitionTableError):
        partitions.parse(b"\xff" * 0xC00)
    with pytest.raises(partitions.PartitionTableError, match="past the 2 MB flash"):
        partitions.build(parts, 2 << 20)
    with pytest.raises(partitions.PartitionTableError, match="overlaps"):
        partitions.build([partitions.Partition("a", 1, 2, 0x9000, 0x6000), partitions.Partition("b", 1, 2, 0xA000, 0x1000)])


def test_base_image_checked(tmp_path):
    junk = tmp_path / "micropython.uf2"
    junk.write_bytes(b"UF2\n" + bytes(100))
    with pytest.raises(bundle.BundleError, match="not an ESP firmware image"):
        bundle.build_bundle(tmp_path / "o", base=junk)
    base = tmp_path / "ESP32_GENERIC-v1.24.1.bin"
    from fleetdesk.boards import appimage

    base.write_bytes(appimage.build_image("esp32", bytes(1000)))
    b = bundle.build_bundle(tmp_path / "o2", base=base)
    assert [(p.name, p.offset) for p in b.parts] == [("micropython", 0x1000), ("vfs", 0x200000)]


def test_esp_idf_flasher_args_loads(tmp_path):
    built = bundle.build_bundle(tmp_path / "b", chip="esp32c3")
    idf = tmp_path / "idf"
    (idf / "bootloader").mkdir(parents=True)
    (idf / "bootloader" / "bootloader.bin").write_bytes(built.parts[0].data)
    (idf / "partition-table.bin").write_bytes(built.parts[1].data)
    (idf / "app.bin").write_bytes(built.parts[2].data)
    (idf / "flasher_args.json").write_text(json.dumps({
        "flash_files": {"0x0": "bootloader/bootloader.bin", "0x8000": "partition-table.bin", "0x10000": "app.bin"},
        "extra_esptool_args": {"chip": "esp32c3", "before": "default_reset"},
    }))
    loaded = bundle.load_bundle(idf)
    assert loaded.chip == "esp32c3"
    assert [(p.name, p.offset) for p in loaded.parts] == [("bootloader", 0), ("partition-table", 0x8000), ("app", 0x10000)]
    assert loaded.vfs_offset == 0x200000  # found through the flashed partition table


def test_bundle_ships_mpy_bytecode_and_frozen_builds_ship_main_only(tmp_path):
    b = bundle.build_bundle(tmp_path / "b", chip="esp32")
    files = fsimage.read_image(b.vfs.data)
    app = {p for p in files if p.startswith("/fd/")}
    assert "/fd/app.mpy" in app and not any(p.endswith(".py") for p in app)
    assert all(files[p][:2] == b"M\x06" for p in app)  # bytecode v6: MicroPython 1.19+ (ESP32 1.22-1.25)
    # a base image without the app frozen in is refused for --frozen; one with it ships main.py only
    plain = tmp_path / "plain.bin"
    plain.write_bytes(b"\xe9" + bytes(4096))
    with pytest.raises(bundle.BundleError, match="no frozen fd/"):
        bundle.build_bundle(tmp_path / "f1", chip="esp32", base=plain, frozen=True)
    custom = tmp_path / "custom.bin"
    custom.write_bytes(b"\xe9" + bytes(4096) + b"fd/app.py\x00fd/mqtt.py\x00")
    fb = bundle.build_bundle(tmp_path / "f2", chip="esp32", base=custom, frozen=True)
    ffiles = fsimage.read_image(fb.vfs.data)
    assert "/main.py" in ffiles and not any(p.startswith("/fd/") for p in ffiles)
