"""fd.jsonskim: a JSON document read in small chunks keeps everything but its long strings,
under CPython and under the MicroPython unix port (the interpreter a board runs it on)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from fleetdesk.paths import FIRMWARE_DIR
from fleetdesk.virtual.runtime import micropython_binary

if str(FIRMWARE_DIR) not in sys.path:
    sys.path.append(str(FIRMWARE_DIR))

from fd import jsonpick, jsonskim

DOC = {"version": 9, "state": {"refresh": 3000, "on": True, "notes": "x" * 8000, "q": 'a"b\\c{' * 500,
                               "k": "short \" \\ {esc}", "n": [1, {"b": "}"}]}, "clientToken": "tok"}


def _skim(raw: bytes, size: int) -> tuple[bytes, int]:
    s = jsonskim.Skim()
    for i in range(0, len(raw), size):
        s.feed(memoryview(raw)[i:i + size])
    return s.result(), s.elided


@pytest.mark.parametrize("size", [1, 3, 1024])
def test_long_strings_become_the_pickers_placeholder_and_the_rest_is_kept(size):
    raw = json.dumps(DOC).encode()
    out, elided = _skim(raw, size)
    got = json.loads(out)
    want = json.loads(raw)
    for key in ("notes", "q"):
        want["state"][key] = jsonpick.placeholder(len(json.dumps(DOC["state"][key])))
    assert got == want
    assert elided == 2


def test_a_string_left_open_is_refused():
    s = jsonskim.Skim()
    s.feed(b'{"a": "unterminated')
    with pytest.raises(ValueError, match="unterminated"):
        s.result()


def test_same_result_on_the_micropython_unix_port(tmp_path):
    raw = json.dumps(DOC).encode()
    (tmp_path / "doc.json").write_bytes(raw)
    script = tmp_path / "t.py"
    script.write_text(f"""
import sys
sys.path.insert(0, {str(FIRMWARE_DIR)!r})
from fd import jsonskim
raw = open({str(tmp_path / "doc.json")!r}, "rb").read()
s = jsonskim.Skim()
for i in range(0, len(raw), 7):
    s.feed(memoryview(raw)[i:i + 7])
sys.stdout.write(s.result().decode())
""")
    r = subprocess.run([micropython_binary(), str(script)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == json.loads(_skim(raw, 1024)[0])
