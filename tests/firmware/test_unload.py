"""fd.compat.unload on the MicroPython unix port: a module dropped after use (fd.rpc between
requests, fd.tls once its context is built, fd.jsonpick after a delta) gives its GC heap
back and imports again when needed."""

from __future__ import annotations

import subprocess

from fleetdesk.paths import FIRMWARE_DIR
from fleetdesk.virtual.runtime import micropython_binary


def test_an_unloaded_module_frees_its_heap_and_loads_again(tmp_path):
    script = tmp_path / "t.py"
    script.write_text(f"""
import sys, gc
sys.path.insert(0, {str(FIRMWARE_DIR)!r})
from fd import compat, version
import fd

def use():
    from fd.rpc import Rpc
    return Rpc.__name__

def loaded():
    use()
    gc.collect()
    return gc.mem_alloc()

def cycle():
    name = use()
    compat.unload("fd.rpc")
    gc.collect()
    return name, gc.mem_alloc()

gc.collect(); base = gc.mem_alloc()
held = loaded() - base
compat.unload("fd.rpc")
print("gone", "fd.rpc" not in sys.modules, hasattr(fd, "rpc"))
gc.collect(); left = gc.mem_alloc() - base
print("freed", held - left >= held // 2, held, left)
name, first = cycle()
for _ in range(3):
    _, last = cycle()
print("again", name, "no growth", last - first <= 256, first - base, last - base)
""")
    r = subprocess.run([micropython_binary(), str(script)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    # its names stay interned (MicroPython never frees qstrs); the rest of its heap is freed,
    # and loading it again and again does not grow the heap
    assert "gone True False" in r.stdout and "freed True" in r.stdout, r.stdout
    assert "again Rpc no growth True" in r.stdout, r.stdout
