"""The desktop basics a packager and a launcher read: .desktop entry, icon, licence files."""

from __future__ import annotations

import configparser
import tomllib
from pathlib import Path

from fleetdesk.paths import RESOURCES_DIR

ROOT = Path(__file__).resolve().parent.parent


def test_desktop_entry_starts_the_gui_with_our_icon():
    entry = configparser.ConfigParser(interpolation=None)
    entry.optionxform = str
    entry.read(RESOURCES_DIR / "desktop" / "fleetdesk.desktop")
    d = entry["Desktop Entry"]
    assert d["Type"] == "Application" and d["Exec"].split() == ["fleetdesk", "gui"]
    assert d["Icon"] == "fleetdesk" and d["Terminal"] == "false"
    # the task bar matches windows to the entry by the name the app sets (gui/app.py)
    assert "app.setDesktopFileName(DESKTOP_FILE_NAME)" in (ROOT / "gui" / "app.py").read_text()
    assert 'DESKTOP_FILE_NAME = "fleetdesk"' in (ROOT / "gui" / "app.py").read_text()


def test_icon_is_a_real_png_and_svg():
    png = (RESOURCES_DIR / "icons" / "fleetdesk.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (width, height) == (256, 256)
    assert (RESOURCES_DIR / "icons" / "fleetdesk.svg").read_text().lstrip().startswith("<svg")


def test_licence_files_ship_with_the_package():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MIT"
    for name in project["license-files"]:
        assert (ROOT / name).is_file(), name
    assert "MIT License" in (ROOT / "LICENSE").read_text()
    notices = (ROOT / "THIRD-PARTY-NOTICES.md").read_text()
    assert "esptool" in notices and "GPL-2.0-or-later" in notices and "LGPL" in notices
