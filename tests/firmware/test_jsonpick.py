"""fd.jsonpick: keys picked out of a shadow document without parsing the rest, under CPython
and under the MicroPython unix port (the interpreter a board runs it on)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from fleetdesk.paths import FIRMWARE_DIR
from fleetdesk.virtual.runtime import micropython_binary

if str(FIRMWARE_DIR) not in sys.path:
    sys.path.append(str(FIRMWARE_DIR))

from fd import jsonpick

DOC = {"version": 9, "timestamp": 1, "state": {"refresh": 3000, "on": True, "notes": "x{\"]}" * 2000,
                                                "nested": {"a": [1, {"b": "}"}], "c": None}, "firmware_url": "https://h/p"},
       "metadata": {"refresh": {"timestamp": 1}}, "clientToken": "tok-1"}


def test_picks_wanted_values_and_names_the_rest():
    raw = json.dumps(DOC, indent=1).encode()
    items = jsonpick.members(memoryview(raw))
    assert [k for k, _, _ in items] == ["version", "timestamp", "state", "metadata", "clientToken"]
    s, e = jsonpick.find(items, "state")
    state = jsonpick.pick(memoryview(raw), ("on", "refresh", "firmware_url"), s, e)
    assert state == {"refresh": 3000, "on": True, "notes": None, "nested": None, "firmware_url": "https://h/p"}
    s, e = jsonpick.find(items, "clientToken")
    assert jsonpick.value(raw, s, e) == "tok-1"


def test_a_wanted_value_too_large_is_a_placeholder_not_parsed():
    raw = json.dumps({"firmware_url": "h" * 9000}).encode()
    got = jsonpick.pick(raw, ("firmware_url",))
    assert got == {"firmware_url": jsonpick.placeholder(9002)}


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b'{"a": 1', b'{"a" 1}', b'{"a": [1}', b'{"a": "x}',
                                 b'{"a": 1} extra', b'{"a": }', b""])
def test_malformed_documents_raise_value_error(raw):
    with pytest.raises(ValueError):
        jsonpick.members(raw)


def test_escaped_keys_and_strings():
    raw = json.dumps({"k\"ey": "va\\\"lue", "on": False}).encode()
    assert jsonpick.pick(raw, ("on",)) == {"k\"ey": None, "on": False}


def test_same_answers_under_micropython(tmp_path):
    raw = json.dumps(DOC)
    script = tmp_path / "t.py"
    script.write_text(
        "import sys\nsys.path.insert(0, %r)\nfrom fd import jsonpick\n"
        "raw = bytearray(%r)\nmv = memoryview(raw)\nitems = jsonpick.members(mv)\n"
        "s, e = jsonpick.find(items, 'state')\n"
        "print(sorted(jsonpick.pick(mv, ('on', 'refresh'), s, e).items()))\n"
        "try:\n    jsonpick.members(b'{\"a\": [1}')\nexcept ValueError as exc:\n    print('ValueError', exc)\n"
        % (str(FIRMWARE_DIR), raw.encode()))
    r = subprocess.run([micropython_binary(), str(script)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "[('firmware_url', None), ('nested', None), ('notes', None), ('on', True), ('refresh', 3000)]"
    assert lines[1].startswith("ValueError mismatched")
