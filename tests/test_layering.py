"""The domain layer never loads Qt: every fleetdesk module is imported in a fresh interpreter."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import fleetdesk

FORBIDDEN = ("PySide6", "shiboken6", "pyqtgraph", "qasync", "PyQt5", "PyQt6")

PROBE = r"""
import importlib, json, pkgutil, sys
import fleetdesk
failed = {}
names = []
for info in pkgutil.walk_packages(fleetdesk.__path__, "fleetdesk."):
    if info.name.endswith("__main__"):
        continue  # runs the CLI on import
    names.append(info.name)
    try:
        importlib.import_module(info.name)
    except Exception as exc:  # reported, not hidden
        failed[info.name] = repr(exc)
loaded = sorted({m.split(".")[0] for m in sys.modules})
print(json.dumps({"names": names, "failed": failed, "loaded": loaded}))
"""


def test_domain_imports_no_qt():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120, check=True)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert "fleetdesk.cli" in report["names"], "the walk found no modules"
    assert report["failed"] == {}, f"modules that do not import: {report['failed']}"
    bad = sorted(set(report["loaded"]) & set(FORBIDDEN))
    assert bad == [], f"fleetdesk/ loaded GUI modules: {bad}"


def test_no_qt_import_statements_in_domain_sources():
    root = Path(fleetdesk.__file__).parent
    offenders = []
    for path in root.rglob("*.py"):
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            stripped = line.strip()
            if stripped.startswith(("import ", "from ")) and any(f in stripped.split("#")[0] for f in FORBIDDEN):
                offenders.append(f"{path.relative_to(root.parent)}:{lineno}: {stripped}")
    # `fleetdesk gui` defers to fleetdesk_gui.app inside the handler; that line names `gui`, not Qt.
    assert offenders == []


def test_test_module_basenames_are_unique():
    """pytest's default import mode needs unique basenames outside packages; a clash stops collection."""
    root = Path(__file__).parent
    seen: dict[str, Path] = {}
    clashes = []
    for path in root.rglob("test_*.py"):
        if (path.parent / "__init__.py").exists():
            continue
        if path.name in seen:
            clashes.append(f"{seen[path.name]} vs {path}")
        seen[path.name] = path
    assert clashes == []


LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint_imports(*args: str) -> subprocess.CompletedProcess:
    root = Path(__file__).resolve().parent.parent
    return subprocess.run([str(LINT_IMPORTS), "--no-cache", *args], cwd=root, capture_output=True, text=True,
                          timeout=300)


def test_import_contracts_in_pyproject_are_kept():
    """The layering contracts of pyproject.toml [tool.importlinter]: the domain never imports the
    GUI, gui/ reaches serial/esptool/bleak/boto3/awscrt/sqlite3 only through fleetdesk, and
    cloud/boards/ble reach the sandbox only through the cloud backend."""
    out = _lint_imports()
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "3 kept, 0 broken" in out.stdout, out.stdout[-2000:]


def test_a_broken_contract_fails_naming_the_import(tmp_path):
    """The check can fail: the sandbox contract without the backend's exemption is broken, and
    the report names the import that breaks it."""
    config = tmp_path / "contracts.toml"
    config.write_text(
        '[tool.importlinter]\nroot_packages = ["fleetdesk", "fleetdesk_gui"]\ninclude_external_packages = true\n\n'
        '[[tool.importlinter.contracts]]\nname = "no sandbox in cloud"\ntype = "forbidden"\n'
        'source_modules = ["fleetdesk.cloud"]\nforbidden_modules = ["fleetdesk.sandbox"]\n'
        'allow_indirect_imports = true\n')
    out = _lint_imports("--config", str(config))
    assert out.returncode != 0
    assert "fleetdesk.cloud.backend -> fleetdesk.sandbox" in out.stdout, out.stdout[-2000:]


def test_ruff_lint_is_clean_on_fleetdesk_and_gui():
    """pyproject.toml [tool.ruff.lint]: a `# noqa` names a rule that is checked, so it means something."""
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run([str(Path(sys.executable).with_name("ruff")), "check", "--no-cache", "fleetdesk", "gui"],
                         cwd=root, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
