"""Keep long-lived objects out of the cyclic garbage collector's sight.

A run builds a large heap that lives until the process exits: the Kubernetes
client's model and API classes, botocore's service models (tens of thousands of
dicts once an EC2 client exists), the collected items. Every full collection walks
all of it, and pytest's unraisable-exception plugin runs five when a session ends,
in the controller and in every xdist worker: about a tenth of a second each per
process, with nothing to find. `settle()` moves everything alive into the
permanent generation (`gc.freeze`); objects made afterwards are collected as usual.
The plugin thaws the heap after pytest's last collections (`thaw`), so an
in-process pytest (pytester) leaves its host's collector as it found it.

What is frozen is never collected until thawed: call `settle()` only after work
whose results stay for the whole process.
"""

from __future__ import annotations

import gc


def settle() -> None:
    """Freeze what is alive now (see the module docstring)."""
    gc.freeze()


def thaw() -> None:
    gc.unfreeze()
