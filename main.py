"""Start the Fleetdesk desktop app (same as `fleetdesk gui`)."""

import sys

from fleetdesk.cli import main

if __name__ == "__main__":
    sys.exit(main(["gui", *sys.argv[1:]]))
