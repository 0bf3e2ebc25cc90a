"""`./run lint`: every static check, each named with its time; exits non-zero if any fails.

1. ruff on fleetdesk/ and gui/ (pyproject [tool.ruff]);
2. import-linter's layering contracts (pyproject [tool.importlinter]);
3. mypy on fleetdesk and fleetdesk_gui (pyproject [tool.mypy]);
4. pyright (basedpyright's wheel, which bundles node: no download at first run) on the firmware's
   on-board code against the published MicroPython ESP32 stubs (firmware/pyrightconfig.json).

The gui/ folder imports as ``fleetdesk_gui`` through setup.py's package_dir, which the editable
install maps with an import hook that static checkers cannot follow; mypy reads it through a
symlink ``build/typecheck/fleetdesk_gui -> gui``. The board stubs are installed with pip into
``.venv/board-stubs`` (``--target``, not the venv: their ``time.pyi``/``socket.pyi`` are the
board's, not CPython's).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
BOARD_STUBS = ROOT / ".venv" / "board-stubs"
# Pinned: a new stubs release can add or drop names; bump it on purpose.
BOARD_STUB_PACKAGES = ("micropython-esp32-esp32-generic-stubs==1.29.0.post1", "micropython-stdlib-stubs==1.29.0.post2")


def ensure_board_stubs() -> None:
    stamp = BOARD_STUBS / ".installed"
    want = " ".join(BOARD_STUB_PACKAGES)
    if stamp.exists() and stamp.read_text() == want:
        return
    out = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--upgrade", "--target",
                          str(BOARD_STUBS), *BOARD_STUB_PACKAGES], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"lint: installing the MicroPython board stubs failed:\n{out.stdout}{out.stderr}")
    stamp.write_text(want)


def gui_link() -> Path:
    base = ROOT / "build" / "typecheck"
    base.mkdir(parents=True, exist_ok=True)
    link = base / "fleetdesk_gui"
    if link.is_symlink() and link.resolve() != (ROOT / "gui").resolve():
        link.unlink()  # left by a checkout that has moved
    if not link.is_symlink():
        link.symlink_to(ROOT / "gui", target_is_directory=True)
    return base


def checks() -> list[tuple[str, list[str], dict[str, str]]]:
    env = {"MYPYPATH": str(gui_link())}
    return [
        ("ruff", [str(BIN / "ruff"), "check", "--no-cache", "fleetdesk", "gui"], {}),
        ("import-linter", [str(BIN / "lint-imports"), "--no-cache"], {}),
        ("mypy", [str(BIN / "mypy"), "-p", "fleetdesk", "-p", "fleetdesk_gui"], env),
        ("pyright (firmware vs MicroPython ESP32 stubs)",
         [str(BIN / "basedpyright"), "-p", str(ROOT / "firmware" / "pyrightconfig.json")], {}),
    ]


def main(argv: list[str]) -> int:
    ensure_board_stubs()
    failed = []
    for name, cmd, env in checks():
        if argv and not any(a in name for a in argv):
            continue
        t0 = time.monotonic()
        out = subprocess.run(cmd, cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True)
        took = time.monotonic() - t0
        if out.returncode != 0:
            failed.append(name)
            sys.stdout.write(out.stdout[-20000:] + out.stderr[-4000:])
        print(f"lint: {name}: {'ok' if out.returncode == 0 else 'FAILED'} ({took:.1f} s)", flush=True)
    if failed:
        print(f"lint: failed: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
