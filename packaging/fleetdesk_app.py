"""Entry of the standalone app (PyInstaller): worker roles first, then the CLI; no arguments = the GUI.

The app re-starts itself for its child processes (``--fleetdesk-role``, fleetdesk/roles.py)
because a frozen app has no ``python -m``.
"""

import sys

from fleetdesk.roles import dispatch

if __name__ == "__main__":
    code = dispatch()
    if code is None:
        from fleetdesk.cli import main

        code = main(sys.argv[1:] or ["gui"])
    sys.exit(code)
