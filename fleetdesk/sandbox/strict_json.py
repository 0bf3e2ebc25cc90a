"""JSON as RFC 8259 defines it, for everything the sandbox parses from a client.

Python's :func:`json.loads` accepts ``NaN``, ``Infinity`` and ``-Infinity`` and turns
``1e309`` into ``inf``; none of them is JSON, AWS refuses them, and storing them makes
later answers non-JSON. A document nested deeper than :data:`MAX_DEPTH` (Python's parser
would hit its recursion limit: a 500 on the first read) is refused too.
"""

from __future__ import annotations

import json
import math
from typing import Any

MAX_DEPTH = 100


class StrictJsonError(ValueError):
    """Not RFC 8259 JSON (the message says where)."""


def _constant(name: str):
    raise StrictJsonError(f"{name} is not valid JSON (RFC 8259 has no NaN or Infinity)")


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise StrictJsonError(f"the number {text} is out of range")
    return value


def _depth_ok(text: str) -> bool:
    depth, in_str, esc = 0, False, False
    for ch in text:
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return False
        elif ch in "]}":
            depth -= 1
    return True


def loads(data: bytes | str) -> Any:
    """Parse RFC 8259 JSON.

    Raises:
        StrictJsonError: invalid JSON, NaN/Infinity, a number out of double range, or nesting
            deeper than :data:`MAX_DEPTH`.
    """
    try:
        text = data.decode("utf-8") if isinstance(data, (bytes, bytearray)) else data
    except UnicodeDecodeError as exc:
        raise StrictJsonError(f"not UTF-8: {exc}") from None
    if text.count("[") + text.count("{") > MAX_DEPTH and not _depth_ok(text):  # scan only when it could be
        raise StrictJsonError(f"the document is nested deeper than {MAX_DEPTH} levels")
    try:
        return json.loads(text, parse_constant=_constant, parse_float=_float)
    except StrictJsonError:
        raise
    except RecursionError:
        raise StrictJsonError(f"the document is nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:
        raise StrictJsonError(str(exc)) from None
