# The firmware version this file set was built as (OTA packages carry their own copy).
VERSION = "1.0.0"
APP = "fleetdesk-fw"
