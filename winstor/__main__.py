"""`python -m winstor` is the `winstor` command."""

import sys

from winstor.cli.main import main

sys.exit(main())
