"""`fleetdesk firmware build|inspect`: make and look into firmware bundles."""

from __future__ import annotations

import json
from pathlib import Path


def register(sub) -> None:
    """Add the ``firmware`` command family."""
    parser = sub.add_parser("firmware", help="build and inspect firmware bundles")
    fw_sub = parser.add_subparsers(dest="firmware_command", metavar="ACTION")

    build = fw_sub.add_parser("build", help="build a bundle: partition table, vfs image, manifest, merged .bin")
    build.add_argument("--chip", default="esp32", choices=["esp32", "esp32s3", "esp32c3", "esp8266"])
    build.add_argument("--base", type=Path, help="MicroPython firmware .bin for real boards (from micropython.org)")
    build.add_argument("--frozen", action="store_true",
                       help="--base has fd/ frozen in (firmware/manifest.py): ship main.py only")
    build.add_argument("--partitions", type=Path, help="ESP-IDF partition CSV (default: MicroPython 4 MB layout)")
    build.add_argument("--min-revision", help="lowest chip revision supported, e.g. 3.0 (refused below it)")
    build.add_argument("-o", "--output", type=Path, required=True, help="output directory")
    build.add_argument("--json", action="store_true", help="print the result as JSON")
    build.set_defaults(func=_build)

    inspect = fw_sub.add_parser("inspect", help="show chip, parts, offsets, sizes and SHA-256 of a bundle")
    inspect.add_argument("bundle", type=Path, help="bundle directory, manifest.json or merged .bin")
    inspect.add_argument("--json", action="store_true", help="print the result as JSON")
    inspect.set_defaults(func=_inspect)
    ota = fw_sub.add_parser("ota", help="build the OTA package (FDPKG1) of this firmware for an OTA job")
    ota.add_argument("--version", required=True, help="the firmware_version devices report after the update")
    ota.add_argument("-o", "--output", type=Path, help="package file (default: <data dir>/ota/fleetdesk-VERSION.pkg)")
    ota.add_argument("--json", action="store_true", help="print the result as JSON")
    ota.set_defaults(func=_ota)
    parser.set_defaults(func=lambda args: parser.print_help() or 2)


def _describe(bundle) -> dict:
    return {
        "chip": bundle.chip,
        "version": bundle.version,
        "path": str(bundle.path) if bundle.path else None,
        "vfs_offset": bundle.vfs_offset,
        "vfs_size": bundle.vfs_size,
        "flash_end": bundle.end,
        "flash_size": bundle.flash_size,
        "min_chip_revision": bundle.min_chip_revision,
        "parts": [{"name": p.name, "offset": p.offset, "size": p.size, "sha256": p.sha256} for p in bundle.parts],
    }


def _print(info: dict) -> None:
    print(f"chip:     {info['chip']}")
    print(f"version:  {info['version'] or '-'}")
    if info["vfs_offset"] is not None:
        print(f"vfs:      {info['vfs_offset']:#x} ({info['vfs_size'] // 1024} KB littlefs)")
    print(f"needs:    {info['flash_size']} flash")
    if info["min_chip_revision"]:
        rev = info["min_chip_revision"]
        print(f"min rev:  v{rev // 100}.{rev % 100}")
    print(f"{'part':<16} {'offset':>10} {'size':>10}  sha256")
    for p in info["parts"]:
        print(f"{p['name']:<16} {p['offset']:#10x} {p['size']:>10}  {p['sha256']}")


def _build(args) -> int:
    from fleetdesk.boards.bundle import DEFAULT_CSV, build_bundle, firmware_files

    from fleetdesk.virtual.cli import parse_revision

    min_rev = parse_revision(args.min_revision) if args.min_revision else None
    if "/main.py" not in firmware_files():  # a bundle without it boots to the REPL: never PASS-able
        from fleetdesk.errors import FleetdeskError
        from fleetdesk.paths import FIRMWARE_DIR

        raise FleetdeskError(f"the firmware sources in {FIRMWARE_DIR} have no main.py",
                             "reinstall fleetdesk (pip install --force-reinstall fleetdesk)")
    from fleetdesk.progress import bars

    with bars(args.json) as progress:  # a bar in a terminal only (the build takes seconds: mpy-cross per file)
        progress.update(f"bundle {args.chip}", stage="building", percent=0)
        bundle = build_bundle(args.output, chip=args.chip, base=args.base,
                              partition_csv=args.partitions or DEFAULT_CSV, min_revision=min_rev,
                              frozen=args.frozen)
        progress.update(f"bundle {args.chip}", stage="built", done=True)
    info = _describe(bundle)
    info["files"] = sorted(p for p in firmware_files() if not (args.frozen and p.startswith("/fd/")))
    if args.json:
        print(json.dumps(info))
    else:
        print(f"bundle written to {args.output}")
        _print(info)
    return 0


def _inspect(args) -> int:
    from fleetdesk.boards.bundle import load_bundle

    info = _describe(load_bundle(args.bundle))
    if args.json:
        print(json.dumps(info))
    else:
        _print(info)
    return 0


def _ota(args) -> int:
    from fleetdesk.fleet.ota_files import build_ota_package, describe_package

    info = describe_package(build_ota_package(args.version, args.output))
    info["version"] = args.version
    if args.json:
        print(json.dumps(info))
    else:
        print(f"OTA package {info['path']}: {info['size']} bytes, sha256 {info['sha256']}, version {args.version}")
        print("upload it with a job: Jobs page → OTA → Firmware file…, or fleetdesk jobs create")
    return 0
