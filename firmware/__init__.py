"""Host-side marker: installs this folder as the data package ``fleetdesk._data.firmware``.

Never copied to a board (the bundle takes main.py and fd/ only); read the firmware through
``fleetdesk.paths.FIRMWARE_DIR``.
"""
