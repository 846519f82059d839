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
all of them (in-process, no API requests; each one that settles wakes it) to do the
same for each new failure. A check whose own object failed goes first. When an early check's
own turn comes it is not run again. Checks whose objects are healthy keep
catalog order, since some read what an earlier check recorded.
"""

from __future__ import annotations

from typing import Any

import pytest

from winstor.cluster import outcome
from winstor.plugin import checks, internals
from winstor.plugin.runstate import RunState

__all__ = ["Ordering"]

POLL = 1.0
"""Seconds between looks at the slow objects when none settles: each one that settles
wakes the look at once (`outcome.wait_for_news`); this is only a safety net."""


class Ordering:
    """Registered by the plugin; holds the run state and what it ran out of turn.

    A check runs out of turn through pytest's own public `pytest_runtest_protocol` hook,
    so every plugin's wrappers (captures, warnings, timeouts, reports) see it as they see
    any check. The two steps pytest and xdist leave no public way to take - tearing the
    collector stack down to a given item, and a worker reporting an item it was not told
    to run - are `winstor.plugin.internals`; when one of them changed shape (checked at
    session start) this ordering is off and checks run in catalog order.
    """

    def __init__(self, state: RunState, cluster_of: Any) -> None:
        self.state = state
        self.cluster_of = cluster_of
        self._position: dict[str, int] = {}
        self._checks: dict[str, list[tuple[int, pytest.Item]]] = {}  # per cluster, in order
        self._out_of_turn: str | None = None  # node id running out of turn right now
        self.off: list[str] = []

    @pytest.hookimpl(trylast=True)  # after pytest's runner made the session's setup state
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        self.off = internals.problems(session)
        if self.off:
            session.config.issue_config_time_warning(pytest.PytestWarning(
                "winstor: reporting failures first is off, checks report in catalog order: "
                + "; ".join(self.off)), stacklevel=2)

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: pytest.Item | None) -> Any:
        if self.off or item.nodeid == self._out_of_turn:
            return None  # pytest runs it as usual
        if item.nodeid in self.state.ran_early:
            # Reported already, ahead of its turn: only the teardown its turn would
            # have done is left, so that the next item finds the stack it expects.
            internals.teardown_to(item.session, nextitem)
            return True
        name = self.cluster_of(item)
        slow = self.state.slow_objects.get(name) if name else None
        if slow and checks.check_of(item):
            self._report_failures_first(item, name, slow)
        return None

    # -----------------------------------------------------------------------------
    def _deps(self, item: pytest.Item, slow: dict[str, list[Any]]) -> list[str]:
        """The slow objects `item` needs, in the order pytest sets them up: those its own
        arguments name first, then those they need (`item.fixturenames`)."""
        return [n for n in getattr(item, "fixturenames", ()) if n in slow]

    def _decided_by_failure(self, item: pytest.Item, slow: dict[str, list[Any]]) -> bool:
        deps = self._deps(item, slow)
        return bool(deps) and any(d.failed for d in slow[deps[0]])

    def _later(self, item: pytest.Item, name: str) -> list[pytest.Item]:
        items = item.session.items
        if not self._position:
            # Indexed once: this runs each time a slow object settles while a check waits,
            # and a worker of a fleet run collects every cluster's checks (16 x 29 items).
            self._position = {it.nodeid: i for i, it in enumerate(items)}
            for i, it in enumerate(items):
                cluster = self.cluster_of(it)
                if cluster and checks.check_of(it):
                    self._checks.setdefault(cluster, []).append((i, it))
        start = self._position.get(item.nodeid, len(items)) + 1
        return [it for i, it in self._checks.get(name, ()) if i >= start
                and it.nodeid not in self.state.ran_early]

    def _report_failures_first(self, item: pytest.Item, name: str,
                               slow: dict[str, list[Any]]) -> None:
        mine = [d for n in self._deps(item, slow) for d in slow[n]]
        while True:
            seen = outcome.news()
            if self._decided_by_failure(item, slow):
                return  # its own failure is due first
            for other in self._later(item, name):
                if self._decided_by_failure(other, slow) and not item.session.shouldfail:
                    self._run_out_of_turn(other, nextitem=item)
            if all(d.settled for d in mine) or all(d.settled for ds in slow.values()
                                                    for d in ds):
                return
            outcome.wait_for_news(seen, timeout=POLL)

    def _run_out_of_turn(self, item: pytest.Item, nextitem: pytest.Item) -> None:
        """Run `item` now, before `nextitem` (whose turn it is), with pytest's own protocol.

        The previous check's teardown kept what `nextitem` needs (its module, say);
        pytest sets an item up only on a stack that is a prefix of its own chain, so
        first tear down to that (session-scoped fixtures stay).
        """
        self.state.ran_early.add(item.nodeid)
        internals.teardown_to(item.session, item)
        self._out_of_turn = item.nodeid
        try:
            with internals.reports_as(item, self._position[item.nodeid]):
                item.ihook.pytest_runtest_protocol(item=item, nextitem=nextitem)
        finally:
            self._out_of_turn = None
