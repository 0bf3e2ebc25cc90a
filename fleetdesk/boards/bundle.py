"""Firmware bundles: what `fleetdesk firmware build` writes and the flash station flashes.

A bundle directory holds the parts (bootloader, partition table, app, littlefs ``vfs``
image with the Python firmware), an ESP Web Tools ``manifest.json`` (``chipFamily``,
``parts[path, offset]``; our extra facts under the ``fleetdesk`` key, which ESP Web
Tools ignores) and a merged ``.bin`` of everything from offset 0. :func:`load_bundle`
reads a bundle directory, its manifest, or a bare merged image.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from pathlib import Path

from fleetdesk.boards import appimage, fsimage, partitions
from fleetdesk.errors import BoardError
from fleetdesk.paths import FIRMWARE_DIR, RESOURCES_DIR

CHIP_FAMILY = {"esp32": "ESP32", "esp32s3": "ESP32-S3", "esp32c3": "ESP32-C3", "esp8266": "ESP8266"}
FAMILY_CHIP = {v: k for k, v in CHIP_FAMILY.items()}
DEFAULT_CSV = RESOURCES_DIR / "bundle" / "partitions-4MiB.csv"


class BundleError(BoardError):
    """A bundle is missing, malformed, or for another chip."""


@dataclass(frozen=True)
class Part:
    """One image in a bundle, written at ``offset``."""

    name: str
    offset: int
    data: bytes = field(repr=False)

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclass(frozen=True)
class Bundle:
    """A loaded bundle.

    Attributes:
        chip: chip family (esp32, esp32s3, esp32c3, esp8266).
        version: firmware version (firmware/fd/version.py at build time).
        parts: images with offsets, in offset order.
        vfs_offset, vfs_size: the littlefs ``vfs`` partition (None if the bundle has none).
        path: where it was loaded from.
        min_chip_revision: lowest chip revision it runs on (major*100+minor), or None.
    """

    chip: str
    version: str
    parts: tuple[Part, ...]
    vfs_offset: int | None = None
    vfs_size: int | None = None
    path: Path | None = None
    min_chip_revision: int | None = None

    @property
    def flash_size(self) -> str:
        """Smallest standard flash size holding the bundle ("4MB")."""
        mb = 1
        while mb << 20 < self.end:
            mb *= 2
        return f"{mb}MB"

    @property
    def vfs(self) -> Part | None:
        """The vfs image part, if the bundle carries one as its own part."""
        return next((p for p in self.parts if p.offset == self.vfs_offset and p.name == "vfs"), None)

    @property
    def end(self) -> int:
        """Flash bytes the bundle needs (end of the last part or of the vfs partition)."""
        ends = [p.offset + p.size for p in self.parts]
        if self.vfs_offset is not None and self.vfs_size:
            ends.append(self.vfs_offset + self.vfs_size)
        return max(ends)

    def with_vfs_files(self, files: dict[str, bytes], remove: tuple[str, ...] = ()) -> Bundle:
        """A copy whose vfs image also holds ``files`` (e.g. /config.json, /certs/*)."""
        vfs = self.vfs
        if vfs is None:
            raise BundleError("This bundle has no vfs image to add files to",
                              "build it with `fleetdesk firmware build`")
        image = fsimage.add_files(vfs.data, files, remove)
        parts = tuple(replace(p, data=image) if p is vfs else p for p in self.parts)
        return replace(self, parts=parts)

    def flash_args(self) -> list[tuple[int, bytes]]:
        """(offset, bytes) pairs for ``esptool.cmds.write_flash``."""
        return [(p.offset, p.data) for p in self.parts]

    def merged(self) -> bytes:
        """One image from offset 0 (gaps 0xFF), as written to ``merged.bin``."""
        out = bytearray(b"\xff" * max(p.offset + p.size for p in self.parts))
        for p in self.parts:
            out[p.offset : p.offset + p.size] = p.data
        return bytes(out)


def firmware_files(root: Path = FIRMWARE_DIR, *, compiled: bool = True) -> dict[str, bytes]:
    """The device app: /main.py and /fd/** (never firmware/hal, which is off-board only).

    Args:
        compiled: ship fd/*.py as mpy-cross ``.mpy`` (the default: a board then needs no
            GC heap for compiling at import; see fleetdesk.boards.mpyfiles); False = sources.
    """
    files: dict[str, bytes] = {}
    main = root / "main.py"
    if main.exists():
        files["/main.py"] = main.read_bytes()
    fd = root / "fd"
    if fd.is_dir():
        for path in sorted(fd.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix in (".py", ".json", ".mpy"):
                files["/" + path.relative_to(root).as_posix()] = path.read_bytes()
    if compiled:
        from fleetdesk.boards.mpyfiles import compile_files

        files = compile_files(files)
    return files


def firmware_version(root: Path = FIRMWARE_DIR) -> str:
    """VERSION from firmware/fd/version.py ("0.0.0" when absent)."""
    path = root / "fd" / "version.py"
    if path.exists():
        for line in path.read_text().splitlines():
            if line.startswith("VERSION"):
                return line.split("=", 1)[1].strip().strip("\"'")
    return "0.0.0"


def build_bundle(out_dir: Path, *, chip: str = "esp32", base: Path | None = None,
                 firmware_root: Path = FIRMWARE_DIR, partition_csv: Path = DEFAULT_CSV,
                 min_revision: int | None = None, frozen: bool = False) -> Bundle:
    """Build a bundle into ``out_dir`` and return it.

    Args:
        out_dir: output directory (created).
        chip: chip family.
        base: MicroPython firmware .bin for real boards (a merged image written at the
            chip's bootloader offset); without it, placeholder bootloader/app images.
        firmware_root: the firmware source tree (main.py, fd/).
        partition_csv: ESP-IDF partition CSV (must contain a ``vfs`` data partition).
        min_revision: lowest chip revision (major*100+minor) the bundle supports; stamped
            into the placeholder images and the manifest (the flash station refuses older chips).
        frozen: `base` is a custom MicroPython image with fd/ frozen in (firmware/manifest.py):
            the vfs carries main.py only (an fd/ there would shadow the frozen app).
    """
    if chip not in CHIP_FAMILY:
        raise BundleError(f"Unknown chip {chip!r}", f"use one of: {', '.join(CHIP_FAMILY)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    table = partitions.from_csv(Path(partition_csv).read_text())
    table_bin = partitions.build(table)
    vfs = partitions.find(table, "vfs")
    app = partitions.find(table, type=partitions.TYPES["app"])
    if vfs is None or app is None:
        raise BundleError("The partition CSV needs an app partition and a 'vfs' data partition",
                          f"start from {DEFAULT_CSV}")
    version = firmware_version(firmware_root)
    files = firmware_files(firmware_root)
    if frozen:
        if base is None:
            raise BundleError("--frozen needs --base: the MicroPython image the app is frozen into",
                              "build one with firmware/manifest.py (see firmware/README.md)")
        if b"fd/app.py" not in Path(base).read_bytes():
            raise BundleError(f"{Path(base).name} has no frozen fd/ app in it",
                              "build the image with FROZEN_MANIFEST=firmware/manifest.py (firmware/README.md)")
        files = {p: d for p, d in files.items() if not p.startswith("/fd/")}
    vfs_image = fsimage.build_image(files, vfs.size)
    bl_off = appimage.BOOTLOADER_OFFSET[chip]
    if base is not None:
        base = Path(base)
        if not base.is_file():
            raise BundleError(f"MicroPython base image {base} not found",
                              "download the .bin for your board from micropython.org/download")
        data = base.read_bytes()
        if not data or data[0] != appimage.ESP_IMAGE_MAGIC:
            raise BundleError(f"{base} is not an ESP firmware image (no 0xE9 header)",
                              "use the MicroPython .bin for your board, not a .elf/.uf2/.app-bin")
        if bl_off + len(data) > vfs.offset:
            raise BundleError(f"{base.name} overlaps the vfs partition at {vfs.offset:#x}",
                              "use a larger flash layout")
        parts = [Part("micropython", bl_off, data), Part("vfs", vfs.offset, vfs_image)]
    else:
        rev = min_revision or 0
        bootloader = appimage.build_image(chip, appimage.app_descriptor("bootloader", version), min_revision=rev)
        app_img = appimage.build_image(chip, appimage.app_descriptor("fleetdesk-fw", version), min_revision=rev)
        parts = [Part("bootloader", bl_off, bootloader), Part("partition-table", partitions.TABLE_OFFSET, table_bin),
                 Part("app", app.offset, app_img), Part("vfs", vfs.offset, vfs_image)]
    bundle = Bundle(chip, version, tuple(parts), vfs.offset, vfs.size, out_dir, min_revision)
    write_bundle(bundle, out_dir)
    return bundle


def write_bundle(bundle: Bundle, out_dir: Path) -> Path:
    """Write parts, merged image and manifest.json; returns the manifest path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest_parts = []
    for p in bundle.parts:
        name = f"{p.name}.bin"
        (out_dir / name).write_bytes(p.data)
        manifest_parts.append({"path": name, "offset": p.offset})
    merged_name = f"fleetdesk-{bundle.chip}-{bundle.version}-merged.bin"
    (out_dir / merged_name).write_bytes(bundle.merged())
    manifest = {
        "name": "Fleetdesk firmware",
        "version": bundle.version,
        "new_install_prompt_erase": True,
        "builds": [{"chipFamily": CHIP_FAMILY[bundle.chip], "parts": manifest_parts}],
        "fleetdesk": {
            "chip": bundle.chip,
            "vfs_offset": bundle.vfs_offset,
            "vfs_size": bundle.vfs_size,
            "flash_size": bundle.flash_size,
            "min_chip_revision": bundle.min_chip_revision,
            "merged": merged_name,
            "sha256": {f"{p.name}.bin": p.sha256 for p in bundle.parts},
        },
    }
    path = out_dir / "manifest.json"
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    return path


def load_bundle(path: Path | str, *, chip: str | None = None) -> Bundle:
    """Load a bundle directory, its manifest.json, an ESP-IDF flasher_args.json, or a merged .bin.

    Args:
        path: bundle dir, manifest path, ESP-IDF ``build/flasher_args.json``, or a .bin
            (a merged image flashed at 0).
        chip: if given, refuse a bundle built for another chip family.

    Raises:
        BundleError: missing files, bad manifest, SHA-256 mismatch, wrong chip.
    """
    path = Path(path)
    if path.is_dir():
        idf = path / "flasher_args.json"
        path = idf if idf.exists() and not (path / "manifest.json").exists() else path / "manifest.json"
    if not path.exists():
        raise BundleError(f"No bundle at {path}", "run `fleetdesk firmware build -o DIR` first")
    if path.suffix == ".bin":
        bundle = _load_merged(path)
    elif path.name == "flasher_args.json":
        bundle = _load_flasher_args(path)
    else:
        bundle = _load_manifest(path)
    if chip is not None and bundle.chip != chip:
        raise BundleError(f"Bundle {path} is for {CHIP_FAMILY[bundle.chip]}, the board is {CHIP_FAMILY.get(chip, chip)}",
                          f"build one with `fleetdesk firmware build --chip {chip}`")
    return bundle


def _load_manifest(path: Path) -> Bundle:
    try:
        manifest = json.loads(path.read_text())
        build = manifest["builds"][0]
        family = build["chipFamily"]
        entries = build["parts"]
    except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
        raise BundleError(f"{path} is not an ESP Web Tools manifest", "rebuild the bundle") from exc
    chip = FAMILY_CHIP.get(family)
    if chip is None:
        raise BundleError(f"Unsupported chip family {family!r} in {path}",
                          f"supported: {', '.join(CHIP_FAMILY.values())}")
    extra = manifest.get("fleetdesk", {})
    sums = extra.get("sha256", {})
    parts = []
    for entry in entries:
        part_path = path.parent / entry["path"]
        try:
            data = part_path.read_bytes()
        except OSError as exc:
            raise BundleError(f"Bundle part {part_path} is missing", "rebuild or re-copy the bundle") from exc
        want = sums.get(entry["path"])
        if want and hashlib.sha256(data).hexdigest() != want:
            raise BundleError(f"Bundle part {entry['path']} does not match its SHA-256",
                              "the file was changed or truncated; rebuild the bundle")
        parts.append(Part(Path(entry["path"]).stem, int(entry["offset"]), data))
    parts.sort(key=lambda p: p.offset)
    vfs_offset, vfs_size = extra.get("vfs_offset"), extra.get("vfs_size")
    if vfs_offset is None:
        vfs_offset, vfs_size = _vfs_from_parts(parts)
    min_rev = extra.get("min_chip_revision")
    return Bundle(chip, str(manifest.get("version", "")), tuple(parts), vfs_offset, vfs_size, path.parent,
                  int(min_rev) if min_rev is not None else None)


def _load_flasher_args(path: Path) -> Bundle:
    """ESP-IDF's build/flasher_args.json: {"flash_files": {"0x1000": "bootloader/..."}, "extra_esptool_args": {"chip"}}."""
    try:
        args = json.loads(path.read_text())
        files = args["flash_files"]
        chip = str(args.get("extra_esptool_args", {}).get("chip", "esp32")).lower()
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise BundleError(f"{path} is not an ESP-IDF flasher_args.json", "pass the file from your build/ dir") from exc
    if chip not in CHIP_FAMILY:
        raise BundleError(f"Unsupported chip {chip!r} in {path}", f"supported: {', '.join(CHIP_FAMILY)}")
    parts = []
    for offset, rel in files.items():
        part_path = path.parent / rel
        try:
            parts.append(Part(Path(rel).stem, int(offset, 0), part_path.read_bytes()))
        except OSError as exc:
            raise BundleError(f"Bundle part {part_path} is missing", "rebuild the ESP-IDF project") from exc
    parts.sort(key=lambda p: p.offset)
    vfs_offset, vfs_size = _vfs_from_parts(parts)
    return Bundle(chip, "", tuple(parts), vfs_offset, vfs_size, path.parent)


def _vfs_from_parts(parts: list[Part]) -> tuple[int | None, int | None]:
    for p in parts:
        table_at = partitions.TABLE_OFFSET - p.offset
        if 0 <= table_at < p.size:
            try:
                vfs = partitions.find(partitions.parse(p.data[table_at:]), "vfs")
            except partitions.PartitionTableError:
                return None, None
            return (vfs.offset, vfs.size) if vfs else (None, None)
    return None, None


def _load_merged(path: Path) -> Bundle:
    data = path.read_bytes()
    chip = None
    for name, off in (("esp32", 0x1000), ("esp32s3", 0), ("esp32c3", 0), ("esp8266", 0)):
        if len(data) > off + 16 and data[off] == appimage.ESP_IMAGE_MAGIC:
            hdr = appimage.read_header(data[off:], name)
            if name == "esp8266" or hdr.chip_id == appimage.CHIP_IDS[name]:
                chip = name
                break
    if chip is None:
        raise BundleError(f"{path} is not a merged ESP image (no bootloader header at 0x0 or 0x1000)",
                          "use the bundle directory or its manifest.json")
    parts = [Part("merged", 0, data)]
    vfs_offset, vfs_size = _vfs_from_parts(parts)
    parts = [Part("merged", 0, data)]
    return Bundle(chip, "", tuple(parts), vfs_offset, vfs_size, path.parent)
