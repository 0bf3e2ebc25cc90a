"""fleetdesk.paths.home_relative: how the pages show a path (Stations' firmware, Settings' state dir)."""

from __future__ import annotations

from pathlib import Path

from fleetdesk.paths import home_relative


def test_a_path_under_home_reads_from_tilde():
    home = Path.home()
    assert home_relative(home / ".local" / "share" / "fleetdesk" / "sandbox") == "~/.local/share/fleetdesk/sandbox"
    assert home_relative(home) == "~"


def test_other_paths_stay_as_typed():
    home = str(Path.home())
    assert home_relative(home + "-backup/fw") == home + "-backup/fw"  # a sibling that starts alike is not home
    assert home_relative("/opt/fw/esp32") == "/opt/fw/esp32"
    assert home_relative("fw/esp32") == "fw/esp32"
