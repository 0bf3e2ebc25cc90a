"""One error root for the domain. Messages name the problem and what to do."""

from __future__ import annotations


class FleetdeskError(Exception):
    """Base of every error Fleetdesk raises on purpose.

    Args:
        message: what went wrong, in words an operator understands.
        advice: what to do about it (optional, shown under the message).
    """

    def __init__(self, message: str, advice: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.advice = advice

    def __str__(self) -> str:
        return f"{self.message}\n  -> {self.advice}" if self.advice else self.message


class ConfigError(FleetdeskError):
    """A profile, a settings file or a state directory is unusable."""


class SandboxError(FleetdeskError):
    """The local AWS IoT emulator could not start or answer."""


class BoardError(FleetdeskError):
    """A serial port or board did not behave."""


class CloudError(FleetdeskError):
    """AWS IoT (or the sandbox) refused or failed a request."""


class BleError(FleetdeskError):
    """A Bluetooth LE scan, link or provisioning step failed."""
