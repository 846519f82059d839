"""`python -m bench.catalog [args]`: `python -m bench --parts catalog [args]`.

A driver of its own beside the catalog part, because the part cannot run the
benchmark's driver without importing it, and the driver imports the part.
"""

from __future__ import annotations

import sys

from bench.__main__ import main

if __name__ == "__main__":
    main(["--parts", "catalog", *sys.argv[1:]])
