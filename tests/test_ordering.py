"""`winstor.plugin.ordering`: which later checks a waiting check looks at.

While a check waits for its slow objects, the ordering looks, each time one settles, at the later
checks of the same cluster to run those an object's failure decides. A worker of a fleet
run collects every cluster's checks, so that look is indexed per cluster once; this pins
what it returns: the same cluster's later checks, in catalog order, without those already
run early, and without other clusters' checks or tests that are not checks.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from winstor.plugin.hooks import cluster_of
from winstor.plugin.ordering import Ordering


class FakeItem:
    def __init__(self, cluster: str | None, check: str | None, session: Any) -> None:
        self.nodeid = f"suites/test_x.py::test_{check or 'plain'}[{cluster}:{check}]"
        self.callspec = SimpleNamespace(params={"cluster": cluster}) if cluster else None
        self._mark = pytest.mark.winstor_check(check, "title").mark if check else None
        self.session = session

    def get_closest_marker(self, name: str) -> Any:
        return self._mark if name == "winstor_check" else None


def test_later_checks_are_the_same_clusters_in_order_without_those_run_early() -> None:
    session = SimpleNamespace(items=[])
    items = [FakeItem(c, k, session) for k in ("A-01", "B-01", "C-01", "D-01")
             for c in ("sim-1", "sim-2")]
    items.insert(3, FakeItem(None, None, session))  # an ordinary test among the checks
    session.items = items
    state = SimpleNamespace(ran_early=set())
    ordering = Ordering(state, cluster_of)  # type: ignore[arg-type]
    first = items[0]  # sim-1:A-01
    assert [i.nodeid for i in ordering._later(first, "sim-1")] == [
        i.nodeid for i in items if i.callspec and i.callspec.params["cluster"] == "sim-1"][1:]
    state.ran_early.add(items[-2].nodeid)  # sim-1:D-01 ran out of turn
    later = ordering._later(items[2], "sim-1")  # from sim-1:B-01
    assert [i.nodeid.rsplit("[", 1)[1] for i in later] == ["sim-1:C-01]"]
    assert ordering._later(items[-1], "sim-2") == []  # the last check has none after it


def test_a_slow_object_that_settles_wakes_the_waiting_look_at_once() -> None:
    """The look at later checks sleeps until a slow object settles (not a fixed poll): the
    wait ends when the background work ends, and the object reads as settled then - not
    only once its thread has finished exiting."""
    import threading
    import time

    from winstor.cluster import outcome
    from winstor.cluster.provision import ProvisionError

    go = threading.Event()

    def begin() -> Any:
        def finish() -> dict:
            go.wait(5)
            raise ProvisionError("the volume cannot be attached")
        return finish

    seen = outcome.news()
    slow = outcome.Deferred[dict]("the share pod").start(begin)
    assert not slow.settled and not outcome.wait_for_news(seen, timeout=0.05)
    started = time.monotonic()
    threading.Timer(0.1, go.set).start()
    assert outcome.wait_for_news(seen, timeout=30)
    assert time.monotonic() - started < 5, "woken by the safety net, not by the news"
    assert slow.settled and slow.failed and "cannot be attached" in (slow.error or "")
