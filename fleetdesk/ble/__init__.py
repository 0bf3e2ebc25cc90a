"""Bluetooth LE field setup.

- ``scanner``: find boards in Config mode (service UUID, name, RSSI, provisioned state).
- ``client``: the Fleetdesk provisioning protocol v1 (firmware/PROTOCOL.md): PoP session,
  Wi-Fi, cloud config, resumable CRC/SHA-checked certificate transfer, commit.
- ``connect``: ``establish_connection`` with the retry/backoff table.
- ``provision``: one whole run from a profile (thing + cert) to "online".
- ``espidf`` / ``espidf_proto``: ESP-IDF unified provisioning (protocomm sec0/1/2) for stock boards.
- ``backends``: the one place that picks the bleak backend (radio or virtual boards).
"""
