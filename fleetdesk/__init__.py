"""Fleetdesk domain layer: boards, BLE, cloud, sandbox, virtual fleet, store.

Nothing under this package may import Qt (PySide6, shiboken6) or pyqtgraph;
tests/test_layering.py enforces it.
"""

__version__ = "0.1.0"
