"""What gets written: a `FlashPlan` loaded from any firmware input the station accepts.

Inputs: a bundle directory from `fleetdesk firmware build`, an ESP Web Tools ``manifest.json``
(chipFamily, parts[path, offset]), a merged ``.bin`` (one image from offset 0), or an ESP-IDF
``flasher_args.json``. Everything is validated before any board is touched: a corrupt
manifest, a missing part file, overlapping offsets or an image larger than the flash are
refused with the file and the problem named.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass, field, replace
from pathlib import Path

from fleetdesk.boards import partitions
from fleetdesk.boards.partitions import Partition
from fleetdesk.errors import BoardError

PARTITION_TABLE_OFFSET = 0x8000
_SIZE_UNITS = {"KB": 1024, "MB": 1024 * 1024}
# ESP image extended header chip ids (esptool bin_image / targets).
_IMAGE_CHIP_IDS = {0: "esp32", 2: "esp32s2", 5: "esp32c3", 9: "esp32s3", 12: "esp32c2", 13: "esp32c6", 16: "esp32h2"}


class FlashInputError(BoardError):
    """A firmware input (bundle, manifest, merged .bin, flasher_args.json) is unusable."""


def normalize_chip(name: str | None) -> str | None:
    """``"ESP32-S3"``/``"esp32s3"``/``"ESP32S3"`` -> ``"esp32s3"``; None stays None."""
    if not name:
        return None
    return name.strip().lower().replace("-", "").replace("_", "")


def parse_size(text: str | int | None) -> int | None:
    """``"4MB"`` -> 4194304; ints pass; "keep"/"detect"/None -> None."""
    if text is None or isinstance(text, int):
        return text
    t = text.strip().upper()
    if t in ("KEEP", "DETECT", ""):
        return None
    for unit, mult in _SIZE_UNITS.items():
        if t.endswith(unit):
            return int(t[: -len(unit)]) * mult
    return int(t, 0)


@dataclass(frozen=True)
class Part:
    """One region to write: flash offset, bytes, and where it came from (for messages)."""

    offset: int
    data: bytes
    name: str

    @property
    def end(self) -> int:
        return self.offset + len(self.data)


@dataclass(frozen=True)
class FlashPlan:
    """A validated set of parts for one chip family.

    Attributes:
        source: the file or directory it was loaded from.
        kind: "bundle", "manifest", "merged" or "flasher_args".
        chip: normalized chip family ("esp32", "esp32s3", ...) or None when the input
            does not say (a merged .bin without an image header).
        parts: regions sorted by offset, non-overlapping.
        flash_size: flash size the image was built for (None = keep the board's).
        min_chip_revision: lowest chip revision the bundle supports (x100: 3 = v0.3), or None.
        partitions: the partition table found at 0x8000, if any.
    """

    source: Path
    kind: str
    chip: str | None
    parts: tuple[Part, ...]
    flash_size: int | None = None
    min_chip_revision: int | None = None
    partitions: tuple[Partition, ...] = field(default=())

    @property
    def sha256(self) -> str:
        """SHA-256 over the firmware as written (offset + bytes of every part)."""
        h = hashlib.sha256()
        for p in self.parts:
            h.update(struct.pack("<II", p.offset, len(p.data)))
            h.update(p.data)
        return h.hexdigest()

    @property
    def end(self) -> int:
        """Flash bytes needed (end of the last part)."""
        return max((p.end for p in self.parts), default=0)

    @property
    def total_bytes(self) -> int:
        return sum(len(p.data) for p in self.parts)

    def partition(self, label: str) -> Partition | None:
        return next((p for p in self.partitions if p.label == label), None)

    def check_fits(self, flash_bytes: int | None) -> None:
        """Refuse when the parts need more flash than ``flash_bytes``."""
        if flash_bytes and self.end > flash_bytes:
            worst = max(self.parts, key=lambda p: p.end)
            raise FlashInputError(
                f"{worst.name} ends at {worst.end:#x} but the board has only {flash_bytes // 1024} KB of flash",
                "use a board with more flash or a bundle built for this flash size",
            )

    def check_chip(self, chip: str | None) -> None:
        """Refuse when the board's chip family differs from the bundle's."""
        want, got = normalize_chip(self.chip), normalize_chip(chip)
        if want and got and want != got:
            raise FlashInputError(
                f"{self.source.name} is built for {want.upper()} but the board is {got.upper()}",
                "pick the bundle built for this chip (or the right board); nothing was written",
            )

    def with_vfs_files(self, files: dict[str, bytes]) -> "FlashPlan":
        """A copy whose littlefs ``vfs`` partition also holds ``files`` (path -> bytes).

        The vfs region is split out of a merged image when needed, so the result is still
        written in one esptool call.
        """
        vfs = self.partition("vfs")
        if vfs is None:
            raise FlashInputError(
                f"{self.source.name} has no 'vfs' partition to hold the device's config",
                "build the bundle with `fleetdesk firmware build` (it lays out a littlefs vfs partition)",
            )
        parts: list[Part] = []
        base = b"\xff" * vfs.size
        for p in self.parts:
            if p.end <= vfs.offset or p.offset >= vfs.offset + vfs.size:
                parts.append(p)
                continue
            # Split the overlap out: keep what lies before and after the vfs partition.
            if p.offset < vfs.offset:
                parts.append(Part(p.offset, p.data[: vfs.offset - p.offset], p.name))
            lo = max(p.offset, vfs.offset)
            hi = min(p.end, vfs.offset + vfs.size)
            base = base[: lo - vfs.offset] + p.data[lo - p.offset : hi - p.offset] + base[hi - vfs.offset :]
            if p.end > vfs.offset + vfs.size:
                parts.append(Part(vfs.offset + vfs.size, p.data[vfs.offset + vfs.size - p.offset :], p.name))
        from fleetdesk.boards.vfs import add_files

        image = add_files(base, files)
        parts.append(Part(vfs.offset, image, "vfs (with device config)"))
        return replace(self, parts=tuple(sorted(parts, key=lambda p: p.offset)))


def parse_partition_table(data: bytes) -> tuple[Partition, ...]:
    """Parse an ESP partition table binary (32-byte entries, magic 0xAA50).

    A table the strict parser refuses (e.g. a bad MD5 entry) is still read entry by entry, so
    the bundle checks can name what is wrong with its parts instead of failing on the table.
    """
    return tuple(partitions.parse(data, strict=False))


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise FlashInputError(f"{what}: part file {path} is missing", "rebuild the bundle or fix the path") from exc
    except OSError as exc:
        raise FlashInputError(f"{what}: cannot read {path} ({exc.strerror})") from exc


def _image_chip(data: bytes) -> str | None:
    """Chip family from an ESP image header at 0x0 or 0x1000 (None when unknown)."""
    for off in (0x0, 0x1000):
        if len(data) >= off + 24 and data[off] == 0xE9:
            chip_id = struct.unpack_from("<H", data, off + 12)[0]
            if chip_id in _IMAGE_CHIP_IDS and any(data[off + 4 : off + 24]):
                return _IMAGE_CHIP_IDS[chip_id]
    return None


def _finish(source, kind, chip, parts, flash_size=None, min_rev=None) -> FlashPlan:
    if not parts:
        raise FlashInputError(f"{source}: no parts to write", "the input lists no files")
    parts = sorted(parts, key=lambda p: p.offset)
    for p in parts:
        if p.offset < 0:
            raise FlashInputError(f"{source}: {p.name} has a negative offset")
        if not p.data:
            raise FlashInputError(f"{source}: {p.name} is empty", "rebuild the bundle")
    for a, b in zip(parts, parts[1:], strict=False):
        if a.end > b.offset:
            raise FlashInputError(
                f"{source}: {a.name} ({a.offset:#x}-{a.end:#x}) overlaps {b.name} at {b.offset:#x}",
                "fix the offsets; overlapping parts would overwrite each other",
            )
    table: tuple[Partition, ...] = ()
    for p in parts:
        if p.offset == PARTITION_TABLE_OFFSET:
            table = parse_partition_table(p.data)
        elif p.offset < PARTITION_TABLE_OFFSET < p.end:
            table = parse_partition_table(p.data[PARTITION_TABLE_OFFSET - p.offset :])
    plan = FlashPlan(Path(source), kind, chip, tuple(parts), flash_size, min_rev, table)
    plan.check_fits(flash_size)
    return plan


def _int(value, where: str) -> int:
    try:
        return int(value, 0) if isinstance(value, str) else int(value)
    except (TypeError, ValueError) as exc:
        raise FlashInputError(f"{where}: offset {value!r} is not a number", "write offsets like 0x10000") from exc


def load_manifest(path: Path, chip: str | None = None) -> FlashPlan:
    """Load an ESP Web Tools manifest (picks the build for ``chip`` when several exist)."""
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise FlashInputError(f"{path} does not exist") from exc
    except ValueError as exc:
        raise FlashInputError(f"{path} is not valid JSON ({exc})", "rebuild or fix the manifest") from exc
    try:
        builds = doc["builds"]
        if not isinstance(builds, list) or not builds:
            raise ValueError("'builds' is empty")
    except (ValueError, KeyError, TypeError) as exc:
        raise FlashInputError(
            f"{path} is not a valid ESP Web Tools manifest ({exc})",
            'it needs {"builds": [{"chipFamily": ..., "parts": [{"path", "offset"}]}]}',
        ) from exc
    build = builds[0]
    if chip and len(builds) > 1:
        build = next((b for b in builds if normalize_chip(b.get("chipFamily")) == normalize_chip(chip)), build)
    try:
        family = build["chipFamily"]
        raw_parts = build["parts"]
        parts = [
            Part(_int(p["offset"], str(path)), _read(path.parent / p["path"], str(path)), p["path"]) for p in raw_parts
        ]
    except (KeyError, TypeError) as exc:
        raise FlashInputError(
            f"{path}: a build or part lacks {exc}", "each build needs chipFamily and parts with path and offset"
        ) from exc
    extra = doc.get("fleetdesk", {}) if isinstance(doc.get("fleetdesk"), dict) else {}
    return _finish(
        path,
        "manifest",
        normalize_chip(family),
        parts,
        parse_size(extra.get("flash_size")),
        extra.get("min_chip_revision"),
    )


def load_flasher_args(path: Path) -> FlashPlan:
    """Load an ESP-IDF ``flasher_args.json`` (from ``idf.py build``)."""
    try:
        doc = json.loads(path.read_text())
        files = doc["flash_files"]
        if not isinstance(files, dict):
            raise TypeError("'flash_files' is not an object")
    except (ValueError, KeyError, TypeError) as exc:
        raise FlashInputError(
            f"{path} is not a valid ESP-IDF flasher_args.json ({exc})", "use the file idf.py build writes"
        ) from exc
    parts = [Part(_int(off, str(path)), _read(path.parent / rel, str(path)), rel) for off, rel in files.items()]
    chip = normalize_chip((doc.get("extra_esptool_args") or {}).get("chip"))
    size = parse_size((doc.get("flash_settings") or {}).get("flash_size"))
    return _finish(path, "flasher_args", chip, parts, size)


def load_merged(path: Path, chip: str | None = None) -> FlashPlan:
    """Load a merged image written from offset 0."""
    data = _read(path, str(path))
    return _finish(path, "merged", normalize_chip(chip) or _image_chip(data), [Part(0, data, path.name)])


def load_plan(source: str | Path, chip: str | None = None) -> FlashPlan:
    """Load any accepted firmware input.

    Args:
        source: a bundle directory, a ``manifest.json``, a ``flasher_args.json`` or a ``.bin``.
        chip: chip hint (selects a manifest build; names a merged image's family).

    Raises:
        FlashInputError: naming the file and the problem.
    """
    path = Path(source)
    if path.is_dir():
        for name, loader in (("manifest.json", load_manifest), ("flasher_args.json", load_flasher_args)):
            if (path / name).exists():
                plan = loader(path / name, chip) if loader is load_manifest else loader(path / name)
                return replace(plan, source=path, kind="bundle" if name == "manifest.json" else plan.kind)
        bins = sorted(path.glob("*.bin"))
        if len(bins) == 1:
            return load_merged(bins[0], chip)
        raise FlashInputError(
            f"{path} holds no manifest.json, flasher_args.json or single merged .bin",
            "point at a bundle from `fleetdesk firmware build`, a manifest or a .bin",
        )
    if not path.exists():
        raise FlashInputError(f"{path} does not exist", "check the --bundle path")
    if path.suffix == ".json":
        try:
            doc = json.loads(path.read_text())
        except ValueError as exc:
            raise FlashInputError(f"{path} is not valid JSON ({exc})", "fix or rebuild the file") from exc
        if isinstance(doc, dict) and "flash_files" in doc:
            return load_flasher_args(path)
        return load_manifest(path, chip)
    return load_merged(path, chip)
