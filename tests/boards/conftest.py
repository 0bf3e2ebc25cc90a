"""Virtual boards (in a background asyncio loop) and a firmware bundle for station tests.

They live in tests/board_rig.py, shared with the Stations-page tests in tests/gui."""

from board_rig import BoardRig, build_bundle, bundle_dir, rig  # noqa: F401  (fixtures and helpers)
