"""Errors of the cloud layer. All derive from :class:`fleetdesk.errors.CloudError`."""

from __future__ import annotations

from typing import Any

from fleetdesk.errors import CloudError


class ConnectFailed(CloudError):
    """The MQTT connection could not be made (bad endpoint, TLS, credentials).

    Attributes:
        reason: short machine-readable cause (an awscrt error name or CONNACK reason).
    """

    def __init__(self, message: str, advice: str | None = None, reason: str = "") -> None:
        super().__init__(message, advice)
        self.reason = reason


class RequestTimeout(CloudError):
    """No answer (shadow reply, RPC response) arrived in time."""


class ShadowRejected(CloudError):
    """The shadow service answered on `/rejected`.

    Attributes:
        code: AWS error code (400, 404, 409, 413, 429, 500...).
        error: the rejected document as received.
    """

    def __init__(self, message: str, advice: str | None = None, code: int = 0, error: dict | None = None) -> None:
        super().__init__(message, advice)
        self.code = code
        self.error = error or {}


class ShadowConflict(ShadowRejected):
    """A shadow update was made against a stale version (409).

    The shadow has been reloaded: ``current`` is the document now in the cloud, and
    ``changed`` lists the dotted keys whose value differs from what the caller sent.
    Nothing was overwritten: the caller decides what to do.
    """

    def __init__(self, message: str, advice: str | None = None, *, error: dict | None = None,
                 current: dict | None = None, changed: list[str] | None = None) -> None:
        super().__init__(message, advice, code=409, error=error)
        self.current = current or {}
        self.changed = changed or []


class RpcError(CloudError):
    """The device answered an RPC with an error.

    Attributes:
        error: the ``error`` member of the reply (string or object).
    """

    def __init__(self, message: str, advice: str | None = None, error: Any = None) -> None:
        super().__init__(message, advice)
        self.error = error


class ControlPlaneError(CloudError):
    """A boto3 call (things, jobs, connectivity) failed.

    Attributes:
        code: the AWS error code, e.g. ``ResourceNotFoundException``.
    """

    def __init__(self, message: str, advice: str | None = None, code: str = "") -> None:
        super().__init__(message, advice)
        self.code = code
