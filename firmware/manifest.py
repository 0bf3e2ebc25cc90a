# MicroPython frozen-module manifest: the stock ESP32_GENERIC image plus this app frozen in.
# Frozen bytecode runs from flash, so the app's code takes no GC heap (issue 16: Normal mode
# needs ~44 KB frozen against ~90 KB as .mpy files). Build (ESP-IDF v5.2 environment):
#   cd micropython/ports/esp32
#   make BOARD=ESP32_GENERIC FROZEN_MANIFEST=/path/to/fleetdesk/firmware/manifest.py
#   fleetdesk firmware build --base build-ESP32_GENERIC/firmware.bin --frozen -o bundle/
# (--frozen: the vfs then carries main.py only; an fd/ on the filesystem would shadow the
# frozen one, as "" comes before ".frozen" on sys.path.) OTA file sets still work: their
# slot goes first on sys.path.
include("$(PORT_DIR)/boards/manifest.py")
package("fd")
