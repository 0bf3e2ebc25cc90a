# Off-board only: what the virtual board's runtime starts instead of main.py.
#
# On a chip machine, network, dht, esp32 and bluetooth are C modules: they take no GC heap.
# Here they are Python shims, so they are imported first and the runtime adds exactly what
# that took to the chip's GC budget (fleetdesk.virtual.runtime.hal_footprint); then main.py
# runs with the chip's own budget left, as on the board.
import os

import _air  # noqa: F401
import dht  # noqa: F401
import esp32  # noqa: F401
import machine  # noqa: F401
import network  # noqa: F401

if os.getenv("FD_CHIP") != "esp8266":
    import bluetooth  # noqa: F401

if os.getenv("FD_HAL_FOOTPRINT"):  # the runtime measuring this prelude
    import gc

    gc.collect()
    print("hal_footprint", gc.mem_alloc())
else:
    import main  # noqa: F401  (runs the board's /main.py)
