"""The GUI installs as `fleetdesk_gui` (folder gui/, mapped by setup.py): no generic top-level `gui`.

A checkout run from its root could still import the folder as `gui` (the working directory is on
sys.path), which would load every GUI module twice under two names: nothing may import it so.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GENERIC = re.compile(r"^\s*(from gui(\.| import)|import gui\b)", re.MULTILINE)


def test_the_gui_package_is_fleetdesk_gui_from_the_gui_folder():
    spec = importlib.util.find_spec("fleetdesk_gui")
    assert spec is not None and Path(spec.origin).parent == ROOT / "gui"


def test_nothing_imports_the_generic_gui_name():
    offenders = [f"{p.relative_to(ROOT)}: {m.group(0).strip()}"
                 for folder in ("fleetdesk", "gui", "tests", "bench", "packaging")
                 for p in (ROOT / folder).rglob("*.py") if "_data" not in p.parts
                 for m in GENERIC.finditer(p.read_text())]
    assert not offenders, offenders
