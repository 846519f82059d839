"""Keep all checks of one cluster on one pytest-xdist worker.

A cluster's checks share session-scoped objects made under the run's names (namespaces,
the claim, the Deployment, the share pods, the node probes). Two workers running checks
of one cluster would each make them, and the second would meet `409 AlreadyExists`; the
head start and the failures-first ordering (`winstor.plugin.ordering`) also assume one
process sees all of a cluster's checks.

xdist's own `--dist loadgroup` groups tests through `xdist_group` marks by appending
`@group` to node ids on the workers. pytest 9 no longer lets a plugin rewrite a node id,
so under pytest 9 the groups silently vanish (pytest-dev/pytest-xdist#1386) and a
cluster's checks are spread over the workers. So winstor brings its own scheduler through
xdist's public `pytest_xdist_make_scheduler` hook, implementing xdist's `Scheduling`
protocol on the node ids the workers report - nothing is written into them, and they are
the same under pytest 8 and 9.

Work units: all checks of one cluster - the cluster is in the test id,
`suites/test_x.py::test_y[sim-1:EBS-PERSIST-01]` - sent to one worker at once, in
collection order (the catalog order `winstor.plugin.hooks` sorts); every other test is a
unit of its own, so a session of ordinary tests (the self-tests) is balanced test by
test, except that tests xdist's loadgroup grouped (pytest 8) stay grouped. A worker is
sent its next unit when at most two of its tests are left, like xdist's load-scope
scheduling, and workers beyond the number of units are shut down at once.
When a worker dies, the test it was running is reported lost (never run again: it might
kill the next worker too) and the rest of its units go to the other workers.
"""

from __future__ import annotations

import difflib
import re
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import pytest

__all__ = ["ClusterScheduling", "unit_of", "workers_expected"]

# `[<cluster>:<CHECK-ID>]` at the end of a node id (xdist may append `@group` after it).
# Check ids follow results.json's pattern, so a plain parameter such as
# `[2:ebs-attach-fails]` is not taken for one.
_CHECK_PARAM = re.compile(r"\[(?P<cluster>[^\[\]]+):(?P<check>[A-Z0-9]+(?:-[A-Z0-9]+)*)\]"
                          r"(?:@[^\[\]]*)?$")

LOW_WATER = 2
"""A worker with this many tests or fewer left is sent its next unit."""


def workers_expected(config: pytest.Config) -> int:
    """How many workers xdist starts: its `--tx` specs (`-n 2` is `--tx popen --tx popen`;
    `3*popen` is three)."""
    count = 0
    for spec in config.getvalue("tx") or ():
        times, star, _rest = str(spec).partition("*")
        count += int(times) if star and times.isdigit() else 1
    return count


def _collection_diff(a: Sequence[str], b: Sequence[str], a_name: str, b_name: str) -> str:
    if list(a) == list(b):
        return ""
    lines = difflib.unified_diff(list(a), list(b), a_name, b_name, lineterm="", n=1)
    return (f"Different tests were collected between {a_name} and {b_name}. The difference "
            "is:\n" + "\n".join(lines))


def unit_of(nodeid: str) -> str:
    """The work unit a test belongs to: `cluster:<name>` for a catalog check; for another
    test, the group xdist's loadgroup appended (`@<group>`, under pytest 8, for tests with
    `xdist_group` marks - winstor's plugin loads in every session where it is installed, so
    their grouping is kept), else the test itself."""
    m = _CHECK_PARAM.search(nodeid)
    if m:
        return f"cluster:{m.group('cluster')}"
    at = nodeid.rfind("@")
    if at > nodeid.rfind("]"):
        return f"group:{nodeid[at + 1:]}"
    return f"test:{nodeid}"


class ClusterScheduling:
    """xdist's `Scheduling` protocol (`xdist.scheduler.protocol`), one cluster per unit.

    `node` objects are xdist's `WorkerController`s; only their public methods are used
    (`send_runtest_some`, `shutdown`, `shutting_down`, `gateway.id`).
    """

    def __init__(self, config: pytest.Config, log: Any = None) -> None:
        self.config = config
        self.numnodes = workers_expected(config)
        self._log = getattr(log, "winstorsched", None) if log is not None else None
        self.collection: list[str] | None = None
        self.registered: dict[Any, list[str]] = {}
        # unit -> indices into the collection, not yet sent to any worker
        self.queue: OrderedDict[str, list[int]] = OrderedDict()
        # worker -> indices sent to it and not yet completed, in the order sent
        self.sent: dict[Any, list[int]] = {}

    # -- the protocol's properties ----------------------------------------------------------
    @property
    def nodes(self) -> list[Any]:
        return list(self.sent)

    @property
    def collection_is_completed(self) -> bool:
        return len(self.registered) >= self.numnodes

    @property
    def tests_finished(self) -> bool:
        # A worker holds its last test until it learns what comes next (or that nothing
        # does), so one left per worker means all is done but the shutdown.
        if not self.collection_is_completed or self.queue:
            return False
        return all(len(pending) < 2 for pending in self.sent.values())

    @property
    def has_pending(self) -> bool:
        return bool(self.queue) or any(self.sent.values())

    # -- workers --------------------------------------------------------------------------
    def add_node(self, node: Any) -> None:
        assert node not in self.sent
        self.sent[node] = []

    def add_node_collection(self, node: Any, collection: Sequence[str]) -> None:
        assert node in self.sent
        if self.collection_is_completed and self.collection is not None \
                and list(collection) != self.collection:
            # A replacement worker that collected something else gets no work.
            self.log(f"worker {node.gateway.id} collected other tests; it gets none")
            return
        self.registered[node] = list(collection)

    def remove_node(self, node: Any) -> str | None:
        pending = self.sent.pop(node)
        if not pending:
            return None
        assert self.collection is not None
        crashed, rest = pending[0], pending[1:]
        requeued: OrderedDict[str, list[int]] = OrderedDict()
        for index in rest:
            requeued.setdefault(unit_of(self.collection[index]), []).append(index)
        for unit, indices in reversed(requeued.items()):
            self.queue[unit] = indices + self.queue.pop(unit, [])
            self.queue.move_to_end(unit, last=False)
        for other in self.nodes:
            self._refill(other)
        return self.collection[crashed]

    def pending(self) -> list[list[str]]:
        """Per worker, the node ids sent to it and not heard complete, in the order it runs
        them: the test it is on is among the first of them."""
        if self.collection is None:
            return []
        return [[self.collection[i] for i in sent] for sent in self.sent.values() if sent]

    # -- tests ----------------------------------------------------------------------------
    def mark_test_complete(self, node: Any, item_index: int, duration: float = 0) -> None:
        self.sent[node].remove(item_index)
        self._refill(node)

    def mark_test_pending(self, item: str) -> None:
        raise NotImplementedError("only xdist's worksteal scheduling moves single tests")

    def remove_pending_tests_from_node(self, node: Any, indices: Sequence[int]) -> None:
        raise NotImplementedError("only xdist's worksteal scheduling moves single tests")

    def schedule(self) -> None:
        assert self.collection_is_completed
        if self.collection is not None:  # a worker joined later (a replacement)
            for node in self.nodes:
                self._refill(node)
            return
        if not self._same_collections():
            self.log("workers collected different tests; nothing is run")
            return
        self.collection = next(iter(self.registered.values()))
        for index, nodeid in enumerate(self.collection):
            self.queue.setdefault(unit_of(nodeid), []).append(index)
        if not self.collection:
            return
        for _ in range(len(self.sent) - len(self.queue)):
            idle, _pending = self.sent.popitem()
            self.log(f"shutting down {idle.gateway.id}: more workers than units")
            idle.shutdown()
        for node in self.nodes:
            self._send_unit(node)
        for node in self.nodes:
            self._refill(node)

    # -- inside ---------------------------------------------------------------------------
    def log(self, *message: object) -> None:
        if self._log is not None:
            self._log(*message)

    def _send_unit(self, node: Any) -> None:
        _unit, indices = self.queue.popitem(last=False)
        self.sent[node].extend(indices)
        node.send_runtest_some(indices)

    def _refill(self, node: Any) -> None:
        if node.shutting_down:
            return
        if not self.queue:
            # Nothing more will come: the worker runs what it has (its last test with
            # no next one) and stops.
            node.shutdown()
            return
        if len(self.sent[node]) <= LOW_WATER:
            self._send_unit(node)

    def _same_collections(self) -> bool:
        (first, reference), *others = self.registered.items()
        same = True
        for node, collection in others:
            diff = _collection_diff(reference, collection, first.gateway.id, node.gateway.id)
            if diff:
                same = False
                self.log(diff)
                self.config.hook.pytest_collectreport(report=pytest.CollectReport(
                    nodeid=node.gateway.id, outcome="failed", longrepr=diff, result=[]))
        return same
