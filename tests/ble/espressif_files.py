"""Espressif's own files for the test ESP-IDF peripheral: the protobuf modules ESP-IDF generates
(components/protocomm/python, components/wifi_provisioning/python) and esp_prov's SRP-6a group and
hash (tools/esp_prov/security/srp6a.py), all vendored unmodified under tests/vendor/esp_prov.

The peripheral takes its wire format from here, not from fleetdesk.ble.espidf_proto, so a wrong
field number or SRP group in the product fails the interop tests instead of confirming itself.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

IDF_PATH = Path(__file__).resolve().parent.parent / "vendor" / "esp_prov"  # laid out as an esp-idf checkout
ESP_PROV = IDF_PATH / "tools" / "esp_prov" / "esp_prov.py"
_PB2 = {"protocomm": ["constants", "sec0", "sec1", "sec2", "session"],
        "wifi_provisioning": ["wifi_constants", "wifi_config", "wifi_scan", "wifi_ctrl"]}


def _load_pb() -> SimpleNamespace:
    """All messages and enum values of Espressif's *_pb2 modules in one namespace (as the product's ``pb``)."""
    names: dict[str, Any] = {}
    for component, mods in _PB2.items():
        folder = str(IDF_PATH / "components" / component / "python")
        if folder not in sys.path:  # the generated modules import each other by bare name
            sys.path.append(folder)
        for mod in mods:
            module = importlib.import_module(f"{mod}_pb2")
            names.update({k: v for k, v in vars(module).items() if not k.startswith("_")})
    return SimpleNamespace(**names)


def _load_srp6a():
    spec = importlib.util.spec_from_file_location("esp_prov_srp6a", IDF_PATH / "tools/esp_prov/security/srp6a.py")
    module = importlib.util.module_from_spec(spec)
    utils_dir = str(IDF_PATH / "tools" / "esp_prov")
    sys.path.insert(0, utils_dir)  # srp6a imports esp_prov's `utils`
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(utils_dir)
        sys.modules.pop("utils", None)  # never shadow another `utils` for the rest of the run
    return module


pb = _load_pb()
_srp6a = _load_srp6a()


def srp_params() -> dict[str, Any]:
    """kwargs for the `srp` package's Verifier/create_salted_verification_key: the group and hash
    esp_prov's ``Srp6a`` uses by default (what security2.py constructs), read from srp6a.py."""
    import inspect

    import srp

    defaults = inspect.signature(_srp6a.Srp6a).parameters
    n, g = _srp6a.get_ng(defaults["ng_type"].default)
    hash_name = {v: k for k, v in vars(_srp6a).items() if k.startswith("SHA")}[defaults["hash_alg"].default]
    srp.rfc5054_enable(True)  # esp_prov pads k, u and H(N) xor H(g) to the group size (RFC 5054)
    return {"hash_alg": getattr(srp, hash_name), "ng_type": srp.NG_CUSTOM,
            "n_hex": f"{n:X}".encode(), "g_hex": f"{g:X}".encode()}  # bytes: srp hands them to BN_hex2bn
