"""The private pytest and pytest-xdist names winstor uses: all of them, and why.

Everything else in winstor uses public hooks and APIs. What is here serves one feature,
reporting a failure as soon as the cluster shows it (`winstor.plugin.ordering`): a later
check whose slow object has already failed is run out of turn, during the turn of the
check that waits. pytest has no public way to run an item out of turn, so:

1. `pytest.Session._setupstate` and its `teardown_exact(nextitem)` (pytest's
   `_pytest.runner.SetupState`). pytest sets an item up only on a stack of collectors
   that is a prefix of the item's own chain, and the previous check tore down only to
   what the check whose turn it is needs. So before a check runs out of turn the stack is
   torn down to its chain, and when the turn of a check that already ran comes, to what
   the next one needs - which pytest's own `pytest_runtest_teardown` does with exactly
   this call. Calling that hook instead would run every plugin's teardown hooks a second
   time for an item that already finished (pytest's logging plugin then fails on the
   item's records, which it deleted at the first teardown).
2. pytest-xdist's `WorkerInteractor.item_index` (`xdist.remote`). A worker labels each
   report it sends with the index of the item it is running and asserts that the
   report's node id is that item's; a check run out of turn sends its reports under its
   own index by setting `item_index` for as long as it runs. xdist has no public way for
   a worker to run or report another item.

`problems()` checks that each still has the shape used; the plugin calls it at session
start and turns the failures-first ordering off, with a warning, when one changed (the
checks then run in catalog order and report in it). `tests/test_internals.py` fails with
the same message, so an upgrade of pytest or xdist that breaks one shows up in CI rather
than as a slower report.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

__all__ = ["PRIVATE", "Private", "problems", "reports_as", "teardown_to"]


@dataclass(frozen=True)
class Private:
    name: str
    why: str


PRIVATE = (
    Private("pytest: Session._setupstate.teardown_exact(nextitem) (_pytest.runner.SetupState)",
            "tear the collector stack down to a given item, to run a check out of turn and "
            "to skip the turn of one that already ran; no public API does this"),
    Private("pytest-xdist: WorkerInteractor.item_index (xdist.remote)",
            "a worker labels reports with the index of the item it runs; a check run out of "
            "turn must send its reports under its own index; no public API does this"),
)


# ------------------------------------------------------------------------------- uses


def teardown_to(session: pytest.Session, nextitem: pytest.Item | None) -> None:
    """Tear the collector stack down to what `nextitem` needs (everything for None), as
    pytest's runner does after each item."""
    session._setupstate.teardown_exact(nextitem)


@contextlib.contextmanager
def reports_as(item: pytest.Item, index: int) -> Iterator[None]:
    """Under pytest-xdist, make this worker send the reports made inside the block as
    `item`'s (the item at `index` in `session.items`); elsewhere, do nothing."""
    worker = _worker_interactor(item.config)
    if worker is None:
        yield
        return
    saved = worker.item_index
    worker.item_index = index
    try:
        yield
    finally:
        worker.item_index = saved


def _worker_interactor(config: pytest.Config) -> Any:
    """The xdist worker's own plugin, on a worker. It is registered without a name, and
    found by its class name: execnet runs `xdist/remote.py` on the worker as the module
    `__channelexec__`, so the class is not the one `import xdist.remote` gives."""
    if not hasattr(config, "workerinput"):
        return None
    return next((p for p in config.pluginmanager.get_plugins()
                 if type(p).__name__ == "WorkerInteractor" and hasattr(p, "sendevent")), None)


def _worker_class(config: pytest.Config | None = None) -> type | None:
    """The worker's class: the running one on a worker, else the installed one."""
    running = _worker_interactor(config) if config is not None else None
    if running is not None:
        return type(running)
    try:
        from xdist.remote import WorkerInteractor
    except ImportError:
        return None
    return WorkerInteractor


# ------------------------------------------------------------------------------ shapes


def problems(session: pytest.Session | None = None) -> list[str]:
    """What no longer has the shape winstor uses, one sentence each (empty: all is well).

    Without a session only the classes are looked at; with one (at session start, after
    pytest's runner made its setup state) the session's own object too."""
    from _pytest.runner import SetupState

    out = setupstate_problems(SetupState)
    if session is not None and not out:
        state = getattr(session, "_setupstate", None)
        if not isinstance(state, SetupState):
            out.append(f"pytest {pytest.__version__}: the session has no _setupstate "
                       f"SetupState (found {type(state).__name__})")
    worker = _worker_class(session.config if session is not None else None)
    if worker is not None:
        out += worker_problems(worker)
    if session is not None and hasattr(session.config, "workerinput") \
            and _worker_interactor(session.config) is None:
        out.append(f"pytest-xdist {_version('pytest-xdist')}: no WorkerInteractor plugin "
                   "is registered on this worker")
    return out


def setupstate_problems(cls: type) -> list[str]:
    """`cls` (pytest's SetupState) still has `teardown_exact(self, nextitem)`."""
    where = f"pytest {pytest.__version__}: _pytest.runner.SetupState"
    method = getattr(cls, "teardown_exact", None)
    if not callable(method):
        return [f"{where} has no teardown_exact"]
    params = list(inspect.signature(method).parameters)
    if params != ["self", "nextitem"]:
        return [f"{where}.teardown_exact takes ({', '.join(params)}), not (self, nextitem)"]
    return []


def worker_problems(cls: type) -> list[str]:
    """`cls` (xdist's WorkerInteractor) still sets `self.item_index` to the index of the item
    it runs and labels reports with it."""
    where = f"pytest-xdist {_version('pytest-xdist')}: xdist.remote.WorkerInteractor"
    out = []
    for method, needs in (("run_one_test", ("self.item_index =",)),
                          ("pytest_runtest_logreport", ("self.item_index",))):
        fn = getattr(cls, method, None)
        if not callable(fn):
            out.append(f"{where} has no {method}")
            continue
        try:
            source = inspect.getsource(fn)
        except (OSError, TypeError):
            out.append(f"{where}.{method}: its source cannot be read to check item_index")
            continue
        missing = [n for n in needs if n not in source]
        if missing:
            out.append(f"{where}.{method} no longer uses {' or '.join(missing)}")
    return out


def _version(dist: str) -> str:
    from importlib import metadata
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "(not installed)"
