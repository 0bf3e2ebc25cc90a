"""Fleetdesk's resources (policies, provisioning template, job documents, CA, partition table,
stylesheet, desktop file and icon), installed as the data package ``fleetdesk._data.resources``.

This file only makes the folder a package for setuptools' editable installs; read the files
through ``fleetdesk.paths.RESOURCES_DIR``.
"""
