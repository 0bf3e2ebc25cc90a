"""``fleetdesk fleet ...``: the fleet command family (simulate, list, watch) and OTA packages.

The fleet model the app keeps live is :mod:`fleetdesk.cloud.fleet_state` (the cloud layer
fills it); the simulator that runs many firmware instances under CPython is
:mod:`fleetdesk.virtual.fleet_sim`. This package only holds the commands over them.
"""
