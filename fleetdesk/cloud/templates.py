"""AWS IoT fleet-provisioning templates, as both sides of a claim use them.

The names Fleetdesk gives its default template and the policies it names, and
:func:`evaluate`, the template language's intrinsic functions (``Ref``, ``Fn::Join``,
``Fn::Sub``, ``Fn::Select``, ``Fn::Split``; AWS's "Provisioning templates" documentation).
The sandbox runs templates with it (fleetdesk.sandbox.provisioning); the flash station uses
it to predict the thing a board will claim (fleetdesk.boards.claim).
"""

from __future__ import annotations

import re
from typing import Any

DEFAULT_TEMPLATE = "fleetdesk-claim"
CLAIM_POLICY = "fleetdesk-claim"
THING_POLICY = "fleetdesk-provisioned-thing"


class TemplateError(ValueError):
    """A template value cannot be evaluated (a parameter it names is missing)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def evaluate(node: Any, params: dict) -> Any:
    """Resolve the intrinsic functions in a template value with ``params``.

    Raises:
        TemplateError: a ``Ref`` or ``${...}`` names a parameter that is not given.
    """
    if isinstance(node, list):
        return [evaluate(x, params) for x in node]
    if not isinstance(node, dict):
        return node
    if len(node) == 1:
        (fn, arg), = node.items()
        if fn == "Ref":
            if arg not in params:
                raise TemplateError(f"Missing parameter: {arg}")
            return params[arg]
        if fn == "Fn::Join":
            sep, items = arg
            return str(sep).join(str(evaluate(x, params)) for x in items)
        if fn == "Fn::Sub":
            text = arg if isinstance(arg, str) else arg[0]
            extra = {} if isinstance(arg, str) else {k: evaluate(v, params) for k, v in arg[1].items()}
            scope = {**params, **extra}

            def sub(m: re.Match) -> str:
                if m.group(1) not in scope:
                    raise TemplateError(f"Missing parameter: {m.group(1)}")
                return str(scope[m.group(1)])
            return re.sub(r"\$\{([^}]+)\}", sub, text)
        if fn == "Fn::Select":
            index, items = arg
            return evaluate(items, params)[int(evaluate(index, params))]
        if fn == "Fn::Split":
            sep, text = arg
            return str(evaluate(text, params)).split(sep)
    return {k: evaluate(v, params) for k, v in node.items()}
