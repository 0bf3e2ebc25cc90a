"""The error type control-plane handlers raise; rendered in AWS's rest-json error shape."""

from __future__ import annotations


class AwsError(Exception):
    """An AWS-shaped API error: botocore raises ``ClientError`` with ``code``.

    Args:
        code: the AWS error code, e.g. "ResourceNotFoundException".
        message: human text (the body's "message").
        status: HTTP status (400 by default).
    """

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


def not_found(message: str) -> AwsError:
    return AwsError("ResourceNotFoundException", message, 404)


def already_exists(message: str) -> AwsError:
    return AwsError("ResourceAlreadyExistsException", message, 409)


def invalid(message: str) -> AwsError:
    return AwsError("InvalidRequestException", message, 400)


def conflict(message: str) -> AwsError:
    return AwsError("DeleteConflictException", message, 409)
