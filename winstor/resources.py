"""Where winstor's data files are, installed or in a checkout.

The seed manifests, the probes, the kind config and the control plane's Go module
live in the repository's top-level folders (`manifests/`, `kind-config/`,
`controlplane/`) and are packages of the distribution (`winstor.manifests`, ...;
pyproject's `package-dir` maps them). They are always found through
`importlib.resources`, never through paths relative to the source tree, so a wheel
installed anywhere finds the same files a checkout does.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = ["data_dir"]


def data_dir(package: str) -> Path:
    """The directory of data package `winstor.<package>` on disk.

    Callers glob and hand these paths to subprocesses (kind, go), so a directory is
    required: a zipped install, which has none, is refused with one line.
    """
    root = resources.files(f"winstor.{package}")
    if not isinstance(root, Path):
        raise RuntimeError(f"winstor.{package} is not on a file system ({root!r}); "
                           "install winstor from a wheel or a checkout, not a zip")
    return root
