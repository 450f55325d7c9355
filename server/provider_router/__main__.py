"""`python -m provider_router` runs the CLI."""

import sys

from provider_router.cli import main

sys.exit(main())
