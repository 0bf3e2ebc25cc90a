"""Firmware inputs: every accepted format loads; every bad input is refused, naming the file."""

from __future__ import annotations

import json
import struct

import pytest

from fleetdesk.boards.images import FlashInputError, load_plan, parse_partition_table
from fleetdesk.boards.vfs import add_files, read_files


def _app_image(chip_id: int = 0, size: int = 4096) -> bytes:
    head = bytes([0xE9, 1, 2, 0x20]) + struct.pack("<I", 0x40080000) + bytes([0xEE, 0, 0, 0]) + struct.pack("<H", chip_id)
    head += bytes(24 - len(head))
    return head + bytes(range(256)) * ((size - len(head)) // 256) + bytes((size - len(head)) % 256)


def _table(entries) -> bytes:
    out = b""
    for label, ptype, sub, off, size in entries:
        out += b"\xaa\x50" + struct.pack("<BBII", ptype, sub, off, size) + label.encode().ljust(16, b"\0") + b"\0" * 4
    return out + b"\xff" * (0xC00 - len(out))


TABLE = _table([("nvs", 1, 2, 0x9000, 0x6000), ("factory", 0, 0, 0x10000, 0x40000), ("vfs", 1, 0x83, 0x50000, 0x20000)])


def _manifest(tmp_path, parts, chip="ESP32", write_files=True):
    entries = []
    for name, off, data in parts:
        if write_files:
            (tmp_path / name).write_bytes(data)
        entries.append({"path": name, "offset": off})
    doc = {"name": "t", "version": "1", "builds": [{"chipFamily": chip, "parts": entries}]}
    (tmp_path / "manifest.json").write_text(json.dumps(doc))
    return tmp_path / "manifest.json"


def test_manifest_bundle_dir_and_partition_table(tmp_path):
    _manifest(tmp_path, [("pt.bin", 0x8000, TABLE), ("app.bin", 0x10000, _app_image())])
    plan = load_plan(tmp_path)
    assert plan.kind == "bundle" and plan.chip == "esp32"
    assert [p.offset for p in plan.parts] == [0x8000, 0x10000]
    assert plan.partition("vfs").offset == 0x50000
    assert len(plan.sha256) == 64
    assert plan.end == 0x10000 + 4096


def test_manifest_file_with_hex_string_offsets(tmp_path):
    path = _manifest(tmp_path, [("app.bin", "0x10000", _app_image())], chip="ESP32-S3")
    plan = load_plan(path)
    assert plan.chip == "esp32s3" and plan.parts[0].offset == 0x10000


def test_flasher_args(tmp_path):
    (tmp_path / "bootloader").mkdir()
    (tmp_path / "bootloader" / "bootloader.bin").write_bytes(_app_image(size=2048))
    (tmp_path / "app.bin").write_bytes(_app_image())
    (tmp_path / "flasher_args.json").write_text(json.dumps({
        "flash_settings": {"flash_size": "2MB"},
        "flash_files": {"0x1000": "bootloader/bootloader.bin", "0x10000": "app.bin"},
        "extra_esptool_args": {"chip": "esp32c3"},
    }))
    plan = load_plan(tmp_path / "flasher_args.json")
    assert plan.kind == "flasher_args" and plan.chip == "esp32c3" and plan.flash_size == 2 * 1024 * 1024


def test_merged_bin_detects_chip_from_header(tmp_path):
    merged = b"\xff" * 0x1000 + _app_image(chip_id=0)
    (tmp_path / "merged.bin").write_bytes(merged)
    plan = load_plan(tmp_path / "merged.bin")
    assert plan.kind == "merged" and plan.chip == "esp32" and plan.parts[0].offset == 0


@pytest.mark.parametrize(
    "case, needle",
    [
        ("corrupt", "not valid JSON"),
        ("no_builds", "not a valid ESP Web Tools manifest"),
        ("missing_part", "app.bin is missing"),
        ("overlap", "overlaps"),
        ("too_big", "KB of flash"),
        ("bad_offset", "is not a number"),
    ],
)
def test_bad_inputs_are_refused_naming_the_file(tmp_path, case, needle):
    if case == "corrupt":
        (tmp_path / "manifest.json").write_text('{"builds": [')
    elif case == "no_builds":
        (tmp_path / "manifest.json").write_text('{"name": "x"}')
    elif case == "missing_part":
        _manifest(tmp_path, [("app.bin", 0x10000, b"x")], write_files=False)
    elif case == "overlap":
        _manifest(tmp_path, [("a.bin", 0x10000, b"\1" * 0x2000), ("b.bin", 0x11000, b"\2" * 16)])
    elif case == "too_big":
        (tmp_path / "app.bin").write_bytes(b"\1" * 64)
        (tmp_path / "flasher_args.json").write_text(json.dumps(
            {"flash_settings": {"flash_size": "2MB"}, "flash_files": {"0x1fffff": "app.bin"}}))
    elif case == "bad_offset":
        _manifest(tmp_path, [("app.bin", "ten", b"x")])
    with pytest.raises(FlashInputError) as info:
        load_plan(tmp_path)
    assert needle in str(info.value)
    assert str(tmp_path) in str(info.value) or "app.bin" in str(info.value)


def test_wrong_chip_and_small_flash_are_refused(tmp_path):
    _manifest(tmp_path, [("app.bin", 0x10000, _app_image())], chip="ESP32")
    plan = load_plan(tmp_path)
    plan.check_chip("ESP32")
    with pytest.raises(FlashInputError, match="built for ESP32 but the board is ESP32S3"):
        plan.check_chip("ESP32-S3")
    with pytest.raises(FlashInputError, match="only 64 KB"):
        plan.check_fits(64 * 1024)


def test_vfs_files_added_and_merged_image_split(tmp_path):
    merged = bytearray(b"\xff" * 0x70000)
    merged[0x8000 : 0x8000 + len(TABLE)] = TABLE
    merged[0x10000 : 0x10000 + 4096] = _app_image()
    base_vfs = add_files(b"\xff" * 0x20000, {"/main.py": b"print('hi')\n"})
    merged[0x50000:0x70000] = base_vfs
    (tmp_path / "fw.bin").write_bytes(bytes(merged))
    plan = load_plan(tmp_path / "fw.bin", chip="esp32")
    dev = plan.with_vfs_files({"/config.json": b"{}", "/certs/key.der": b"k"})
    offsets = [(p.offset, len(p.data)) for p in dev.parts]
    assert offsets == [(0, 0x50000), (0x50000, 0x20000)]
    files = read_files(dev.parts[-1].data)
    assert files == {"/main.py": b"print('hi')\n", "/config.json": b"{}", "/certs/key.der": b"k"}
    assert dev.sha256 != plan.sha256


def test_partition_table_parser():
    parts = parse_partition_table(TABLE)
    assert [(p.label, p.offset, p.size) for p in parts] == [
        ("nvs", 0x9000, 0x6000), ("factory", 0x10000, 0x40000), ("vfs", 0x50000, 0x20000)]
