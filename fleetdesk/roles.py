"""How fleetdesk starts its own child processes, from Python and from the standalone app alike.

From a Python install a child is ``python -m <module>``. The PyInstaller app (packaging/) has
no interpreter to give ``-m`` to: its one executable is started again as
``<app> --fleetdesk-role <role> ARGS`` and :func:`dispatch` (called first by the app's entry,
packaging/fleetdesk_app.py) runs that role with ``ARGS`` instead of the CLI. The MicroPython
unix port and mpy-cross are roles too: the app ships ``micropython`` and ``mpy-cross`` shims
beside its executable that start it that way, found where a venv keeps its launchers.
"""

from __future__ import annotations

import runpy
import sys

ROLE_FLAG = "--fleetdesk-role"
# Modules a fleetdesk process starts as children (each runs as ``__main__``).
MODULE_ROLES = ("fleetdesk", "fleetdesk.sandbox", "fleetdesk.boards.worker", "fleetdesk.virtual.fleet_worker", "mpy_cross")
# Roles that are a console script of a dependency rather than a module's ``__main__``.
SCRIPT_ROLES = ("micropython",)


def frozen() -> bool:
    """True in the standalone (PyInstaller) app."""
    return bool(getattr(sys, "frozen", False))


def module_command(module: str, *args: str) -> list[str]:
    """The command that runs ``python -m module ARGS`` in this install (frozen or not)."""
    if module not in MODULE_ROLES:
        raise ValueError(f"{module!r} is not a fleetdesk child role (known: {', '.join(MODULE_ROLES)})")
    if not frozen():
        return [sys.executable, "-m", module, *args]
    if module == "fleetdesk":
        return [sys.executable, *args]
    return [sys.executable, ROLE_FLAG, module, *args]


def dispatch(argv: list[str] | None = None) -> int | None:
    """Run the role ``argv`` asks for (``--fleetdesk-role NAME ARGS``) and return its exit code.

    Returns None when ``argv`` asks for no role (the caller runs the CLI). A role that ends
    with ``sys.exit`` raises SystemExit out of here, as it would as ``python -m``.
    """
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 2 or argv[0] != ROLE_FLAG:
        return None
    role, rest = argv[1], argv[2:]
    if role == "micropython":
        import micropython_unix  # the [virtual] extra's unix port; its console script does the same

        sys.argv = ["micropython", *rest]
        return int(micropython_unix.main() or 0)
    if role not in MODULE_ROLES:
        print(f"fleetdesk: unknown role {role!r} (known: {', '.join(MODULE_ROLES + SCRIPT_ROLES)})", file=sys.stderr)
        return 2
    sys.argv = [role, *rest]
    runpy.run_module(role, run_name="__main__", alter_sys=True)
    return 0
