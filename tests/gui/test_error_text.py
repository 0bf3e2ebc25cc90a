"""Errors on every page read the same: message, then the advice after an arrow."""

from __future__ import annotations

from fleetdesk.errors import CloudError
from fleetdesk_gui.widgets.error_text import error_text


def test_message_and_advice_on_their_own_lines():
    err = CloudError("the sandbox is not running", "start it with `fleetdesk sandbox up`")
    assert error_text(err) == "the sandbox is not running\n→ start it with `fleetdesk sandbox up`"
    assert error_text(err, " → ") == "the sandbox is not running → start it with `fleetdesk sandbox up`"
    assert error_text(CloudError("refused")) == "refused"
    assert error_text(TimeoutError()) == "TimeoutError"
    assert error_text(OSError(5, "Input/output error")) == "[Errno 5] Input/output error"
