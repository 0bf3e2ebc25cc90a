"""Did the flashed firmware start? Read from the board's own console, real or virtual.

Flashed and verified is not booted: PASS needs the firmware's own evidence, the line it
prints once it runs (``fleetdesk-fw <version> on <chip>, mac <mac>``, firmware/fd/app.py),
in the board's latest boot. What says it did not start, whichever comes first:

- the ROM or the 2nd-stage bootloader refusing the image, a panic, a watchdog or brown-out
  reset (:func:`fleetdesk.boards.console.boot_failure`);
- an unhandled exception before the firmware is up (MicroPython prints ``Traceback`` and
  drops to the REPL: an app that raises at import);
- a virtual board that cannot run the firmware at all (``E: cannot start the firmware``,
  e.g. no MicroPython unix port), or MicroPython finding no ``main.py``.

Only the latest boot counts (from its last ``rst:`` line): a console opened after the flash
may still hold what the board printed before it.
"""

from __future__ import annotations

import re

from fleetdesk.boards.console import boot_failure as _bootloader_failure

BOOTED = re.compile(r"fleetdesk-fw \S+ on \S+, mac [0-9a-fA-F]{12}")
_BOOT_START = re.compile(r"rst:0x[0-9a-f]+ \(")
_NOT_STARTED = re.compile(r"E: cannot start the firmware|MicroPython REPL \(no main\.py\)")
_TRACEBACK = "Traceback (most recent call last)"


def latest_boot(lines) -> list[str]:
    """The console lines from the board's latest reset on."""
    lines = list(lines)
    starts = [i for i, line in enumerate(lines) if _BOOT_START.search(line)]
    return lines[starts[-1]:] if starts else lines


def booted_line(lines) -> str | None:
    """The firmware's own boot line in the latest boot, or None."""
    return next((line.strip() for line in latest_boot(lines) if BOOTED.search(line)), None)


def not_started(lines) -> str | None:
    """The line saying the latest boot did not (or no longer) run the firmware, or None."""
    line = _bootloader_failure(lines)
    if line:
        return line
    boot = latest_boot(lines)
    for i, text in enumerate(boot):
        if _NOT_STARTED.search(text):
            advice = boot[i + 1].strip() if i + 1 < len(boot) and boot[i + 1].lstrip().startswith("->") else ""
            return f"{text.strip()} {advice}".strip()
    for i, text in enumerate(boot):
        if _TRACEBACK in text:
            # the exception is the first line after the traceback's indented "File ..." lines
            rest = [t.strip() for t in boot[i + 1:] if t.strip() and not t.startswith((" ", "\t"))]
            if rest:
                return f"Traceback: {rest[0]}"
    return None
