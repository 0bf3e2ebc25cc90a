"""Fixtures for the cloud-layer tests."""

from __future__ import annotations

import pytest

from .broker import Broker


@pytest.fixture
def broker(tmp_path):
    b = Broker(tmp_path / "broker")
    b.start()
    try:
        yield b
    finally:
        b.stop()
