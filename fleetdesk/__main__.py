import sys

from fleetdesk.cli import main

sys.exit(main())
