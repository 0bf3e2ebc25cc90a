"""The app's desired-value rules agree with the firmware's own validators, value by value:
whatever the app lets a user send, the device accepts (no refusal, no shadow-update storm)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from fleetdesk.cloud.desired import KEYS, check_desired, default_text, problem
from fleetdesk.errors import FleetdeskError
from fleetdesk.paths import FIRMWARE_DIR

VALUES = [50, 100, 999, 1000, 1000.0, 1500.5, 10_000, 3_600_000, 3_600_001, -1, 0, 1, True, False,
          "x", "1000", [], {}, 1.5]

_FIRMWARE_VERDICTS = """
import json, sys
sys.path[:0] = [sys.argv[1] + "/hal", sys.argv[1]]
from fd.settings import validate_on, validate_refresh
values = json.loads(sys.argv[2])
print(json.dumps({k: [f(v)[1] is None for v in values]
                  for k, f in (("on", validate_on), ("refresh", validate_refresh))}))
"""


def test_on_and_refresh_rules_match_the_firmware_validators():
    out = subprocess.run([sys.executable, "-c", _FIRMWARE_VERDICTS, str(FIRMWARE_DIR), json.dumps(VALUES)],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    firmware = json.loads(out)
    for key in ("on", "refresh"):
        app = [problem(key, v) is None for v in VALUES]
        assert app == firmware[key], f"{key}: app and firmware disagree on {VALUES}"


@pytest.mark.parametrize("value", [-1, 1.5, 5.0, True, "x", "1"])
def test_a_reboot_counter_the_firmware_refuses_is_refused_with_what_is_valid(value):
    with pytest.raises(FleetdeskError) as err:
        check_desired({"reboot": value})
    assert err.value.message.startswith("reboot must be a whole number above the reported counter")
    assert json.dumps(value) in err.value.message and "nothing was sent" in err.value.advice


def test_refresh_below_the_firmware_minimum_is_refused_naming_the_range():
    with pytest.raises(FleetdeskError) as err:
        check_desired({"on": True, "refresh": 50})
    assert err.value.message == "refresh must be a whole number of milliseconds from 1000 to 3600000, not 50"


def test_null_deletes_and_unknown_or_reported_keys_are_named():
    check_desired({"refresh": None, "reboot": 3, "on": False, "firmware_version": "1.1.0"})
    assert "no desired key 'colour'" in problem("colour", 1)
    assert problem("temperature", 20) == "temperature is reported by the device and cannot be desired"


def test_every_proposed_default_is_accepted():
    for key in KEYS:
        value = json.loads(default_text(key))
        assert problem(key, value) is None, key
    assert default_text("refresh") == "10000" and default_text("on") == "true" and default_text("nope") == ""
