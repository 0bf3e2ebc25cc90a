"""One way to put an error in front of a user: what went wrong, then what to do.

Domain errors (fleetdesk.errors.FleetdeskError) carry ``message`` and ``advice``; their
``str()`` is made for terminals ("message\\n  -> advice"). Pages show them with this instead, so
every page reads the same: the advice on its own line after an arrow.
"""

from __future__ import annotations


def error_text(error: BaseException | object, sep: str = "\n→ ") -> str:
    """``message`` + ``sep`` + ``advice`` for a FleetdeskError; ``str()`` (or the type name) else.

    Args:
        error: the exception (or any object a callback handed over as its error).
        sep: between message and advice; ``" → "`` for one-line labels.
    """
    message = getattr(error, "message", None)
    if not isinstance(message, str) or not message:
        message = str(error) or type(error).__name__
    advice = getattr(error, "advice", None)
    return f"{message}{sep}{advice}" if isinstance(advice, str) and advice else message
