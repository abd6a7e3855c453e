"""`python -m worker …`."""

import sys

from worker.cli.commands import main

sys.exit(main())
