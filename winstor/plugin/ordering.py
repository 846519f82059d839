"""Report a failure as soon as the cluster shows it, not when its turn comes.

A cluster's checks run in catalog order on one process. When a slow object
fails early - the share pod's mount fails in seconds - while the check ahead
waits minutes for a healthy one (the Deployment's image pull), the failure
would be reported only after that wait and every check queued between them.

The head start (`fixtures/headstart.py`) begins every slow object at once
and lets each settle in the background (`winstor.cluster.outcome.Deferred`). This
hook runs before each check of a cluster: it first runs, right away, the
later checks whose first slow object has already failed - they fail at their
first line with the object's cause, and have no side effects to reorder -
and while the check's own slow objects are still settling it keeps watching
all of them (in-process, no API requests) to do the same for each new
failure. A check whose own object failed goes first. When an early check's
own turn comes it is not run again. Checks whose objects are healthy keep
catalog order, since some read what an earlier check recorded.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import pytest
from _pytest.runner import runtestprotocol

from winstor.plugin import checks
from winstor.plugin.runstate import RunState

__all__ = ["Ordering"]

POLL = 0.05  # seconds between looks at in-process Deferreds (no requests)


class Ordering:
    """Registered by the plugin; holds nothing but the run state."""

    def __init__(self, state: RunState, cluster_of: Any) -> None:
        self.state = state
        self.cluster_of = cluster_of
        self._position: dict[str, int] = {}

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: pytest.Item | None) -> Any:
        if item.nodeid in self.state.ran_early:
            # Reported already, ahead of its turn: only the teardown its turn would
            # have done is left, so that the next item finds the stack it expects.
            item.session._setupstate.teardown_exact(nextitem)
            return True
        name = self.cluster_of(item)
        slow = self.state.slow_objects.get(name) if name else None
        if slow and checks.check_of(item):
            self._report_failures_first(item, name, slow)
        return None

    # -----------------------------------------------------------------------------
    def _deps(self, item: pytest.Item, slow: dict[str, list[Any]]) -> list[str]:
        """The slow objects `item` asks for, in its argument order."""
        info = getattr(item, "_fixtureinfo", None)
        return [n for n in (info.argnames if info else ()) if n in slow]

    def _decided_by_failure(self, item: pytest.Item, slow: dict[str, list[Any]]) -> bool:
        deps = self._deps(item, slow)
        return bool(deps) and any(d.failed for d in slow[deps[0]])

    def _later(self, item: pytest.Item, name: str) -> list[pytest.Item]:
        items = item.session.items
        if not self._position:
            self._position = {it.nodeid: i for i, it in enumerate(items)}
        start = self._position.get(item.nodeid, len(items)) + 1
        return [it for it in items[start:] if self.cluster_of(it) == name
                and it.nodeid not in self.state.ran_early and checks.check_of(it)]

    def _report_failures_first(self, item: pytest.Item, name: str,
                               slow: dict[str, list[Any]]) -> None:
        mine = [d for n in self._deps(item, slow) for d in slow[n]]
        while True:
            if self._decided_by_failure(item, slow):
                return  # its own failure is due first
            for other in self._later(item, name):
                if self._decided_by_failure(other, slow) and not item.session.shouldfail:
                    self.state.ran_early.add(other.nodeid)
                    with _as_current(other, self._position):
                        _run(other, nextitem=item)
            if all(d.settled for d in mine) or all(d.settled for ds in slow.values()
                                                    for d in ds):
                return
            time.sleep(POLL)


@contextlib.contextmanager
def _as_current(item: pytest.Item, position: dict[str, int]) -> Iterator[None]:
    """Under pytest-xdist, make the worker send `item`'s reports as its own: the
    worker labels every report with the index of the item it is running."""
    worker = next((p for p in item.config.pluginmanager.get_plugins()
                   if hasattr(p, "item_index") and hasattr(p, "sendevent")), None)
    if worker is None:
        yield
        return
    saved = worker.item_index
    worker.item_index = position[item.nodeid]
    try:
        yield
    finally:
        worker.item_index = saved


def _run(item: pytest.Item, nextitem: pytest.Item) -> None:
    """What pytest's own runtest protocol does for one item, out of turn.

    The previous check's teardown kept what `nextitem` needs (its module, say);
    pytest sets an item up only on a stack that is a prefix of its own chain,
    so first tear down to that (session-scoped fixtures stay).
    """
    item.session._setupstate.teardown_exact(item)
    ihook = item.ihook
    ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
    runtestprotocol(item, nextitem=nextitem, log=True)
    ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
