"""Fixtures for fleet indexing tests: a sandbox of their own (counts must be exact), boto3 clients."""

from __future__ import annotations

from own_sandbox import data, iot, own_sandbox  # noqa: F401 - fixtures
