"""`python -m winstor` is the `winstor` command."""

import sys

from .cli import main

sys.exit(main())
