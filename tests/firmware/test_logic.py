"""Pure firmware logic, in-process under CPython (fast; the same code runs on MicroPython)."""

from __future__ import annotations

import sys

import pytest

from fleetdesk.fleet.otapkg import build_package, firmware_files
from fleetdesk.paths import FIRMWARE_DIR

if str(FIRMWARE_DIR) not in sys.path:
    sys.path.append(str(FIRMWARE_DIR))

from fd import compat, mqtt, ota  # noqa: E402
from fd.settings import validate_on, validate_refresh  # noqa: E402


@pytest.mark.parametrize("value, ok", [
    (1000, True), (3600000, True), (5000.0, True), (999, False), (3600001, False), (-5, False),
    ("5000", False), (True, False), (None, False), (1500.5, False), ([1000], False),
])
def test_refresh_validation(value, ok):
    got, err = validate_refresh(value)
    assert (err is None) == ok
    if ok:
        assert got == int(value)
    else:
        assert "refresh" in err


def test_on_validation():
    assert validate_on(True) == (True, None) and validate_on(0) == (False, None)
    assert validate_on("yes")[1] and validate_on(None)[1]


def test_ota_package_roundtrip_and_rejects_bad_packages(tmp_path):
    shipped = firmware_files("2.0.0")  # what OTA ships: mpy-cross bytecode (v6), no sources
    assert "fd/app.mpy" in shipped and not any(p.endswith(".py") for p in shipped)
    assert all(shipped[p][:2] == b"M\x06" for p in shipped)
    files = firmware_files("2.0.0", compiled=False)
    assert b'VERSION = "2.0.0"' in files["fd/version.py"] and "fd/app.py" in files
    assert len(files["fd/app.py"]) > ota.CHUNK  # unpacked in chunks, not read whole
    pkg = tmp_path / "p.pkg"
    pkg.write_bytes(build_package(files))
    n = ota.unpack(str(pkg), str(tmp_path / "slot"))
    assert n == len(files)
    assert (tmp_path / "slot" / "fd" / "app.py").read_bytes() == (FIRMWARE_DIR / "fd" / "app.py").read_bytes()

    pkg.write_bytes(build_package(files)[:-10])
    with pytest.raises(ValueError, match="ends"):
        ota.unpack(str(pkg), str(tmp_path / "slot2"))
    pkg.write_bytes(b"FDPKG1\n../../etc/passwd\n3\nabcEND\n")
    with pytest.raises(ValueError, match="bad path"):
        ota.unpack(str(pkg), str(tmp_path / "slot3"))
    pkg.write_bytes(b"\x7fELF....")
    with pytest.raises(ValueError, match="not a Fleetdesk"):
        ota.unpack(str(pkg), str(tmp_path / "slot4"))


def test_ota_url_must_be_https():
    assert ota.parse_url("https://h:8443/a/b?x=1") == ("h", 8443, "/a/b?x=1")
    assert ota.parse_url("https://h/f") == ("h", 443, "/f")
    with pytest.raises(ValueError, match="https"):
        ota.parse_url("http://h/f")


def test_mqtt_packets():
    assert mqtt._varlen(0) == b"\x00" and mqtt._varlen(127) == b"\x7f"
    assert mqtt._varlen(128) == b"\x80\x01" and mqtt._varlen(16383) == b"\xff\x7f"
    p = mqtt.publish_packet("a/b", b"xy", qos=1, pid=7)
    assert p == b"\x32\x09\x00\x03a/b\x00\x07xy"
    c = mqtt.connect_packet("dev", 60, True)
    assert c[0] == 0x10 and c[2:8] == b"\x00\x04MQTT" and c[8] == 4 and c[9] == 0x02


def test_pem_der_roundtrip():
    der = bytes(range(200))
    pem = compat.der_to_pem(der, "CERTIFICATE")
    assert pem.startswith("-----BEGIN CERTIFICATE-----\n") and compat.pem_to_der(pem) == der


def test_join_maps_device_paths_under_a_root():
    assert compat.join("", "/config.json") == "config.json"
    assert compat.join("/", "/config.json") == "/config.json"
    assert compat.join("/tmp/dev", "/certs/ca.der") == "/tmp/dev/certs/ca.der"
