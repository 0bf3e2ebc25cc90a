"""Advice fits the failure: a missing file is not "the port is gone"."""

from __future__ import annotations

from fleetdesk.boards.advice import advise


def test_missing_resource_file_says_file_and_reinstall():
    adv = advise("[Errno 2] No such file or directory: '/usr/lib/python3/site-packages/resources/policies/"
                 "thing-policy.json'", platform="linux")
    assert adv.code == "file-missing" and "reinstall fleetdesk" in adv.action and "port" not in adv.line().lower()


def test_a_vanished_serial_port_is_still_the_port():
    adv = advise("could not open port /dev/ttyUSB0: [Errno 2] No such file or directory: '/dev/ttyUSB0'",
                 platform="linux")
    assert adv.code == "port-gone"
