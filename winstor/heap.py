"""Keep long-lived objects out of the cyclic garbage collector's sight.

A run builds a large heap that lives until the process exits: the Kubernetes
client's model and API classes, botocore's service models (tens of thousands of
dicts once an EC2 client exists), the collected items. Every full collection walks
all of it: pytest's unraisable-exception plugin runs five when a session ends, and
the interpreter runs more while it shuts down, in the controller and in every xdist
worker, about a tenth of a second each with nothing to find. Measured here, they
were a quarter of a 4-cluster `-n 4` run's CPU.

`settle()` moves everything alive into the permanent generation (`gc.freeze`);
objects made afterwards are collected as usual. The plugin settles once a catalog
run's items are collected (an xdist controller: on its first check report; a
session without catalog checks is left alone) and `thaw()`s after pytest's last
collections, so an in-process pytest
(pytester, `pytest.main()`) hands its host an ordinary collector. `thaw()` also
arranges for one last `gc.freeze` when the interpreter exits, so the shutdown
collections skip the heap too; Python never promised `__del__` for objects alive at
exit, and cyclic garbage left at that point is what goes unfinalized.

What is frozen is never collected until thawed: call `settle()` only after work
whose results stay for the whole process. Code that adds such objects later (a boto3
client and its service model) calls `keep_settled()`, which freezes only while a run
has the heap settled: imported as a library, winstor leaves the collector alone.
"""

from __future__ import annotations

import atexit
import gc

_freeze_at_exit = False
_settled = False


def settle() -> None:
    """Freeze what is alive now (see the module docstring)."""
    global _settled
    gc.freeze()
    _settled = True


def keep_settled() -> None:
    """Freeze again if a run has the heap settled: long-lived objects were just made."""
    if _settled:
        gc.freeze()


def thaw() -> None:
    """Unfreeze, and freeze everything again when the interpreter exits."""
    global _freeze_at_exit, _settled
    gc.unfreeze()
    _settled = False
    if not _freeze_at_exit:
        atexit.register(gc.freeze)  # registered late, so it runs among the first
        _freeze_at_exit = True
