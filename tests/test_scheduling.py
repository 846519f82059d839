"""winstor's pytest-xdist scheduler, driven as xdist's DSession drives it, with stand-in
workers: a cluster's checks go to one worker at once and in catalog order, other tests
one at a time, spare workers stop, and a dead worker's test is reported lost while the
rest of its work moves on. (Real runs with -n: tests/test_runs.py.)"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from winstor.plugin.scheduling import ClusterScheduling, unit_of

CHECKS = ("EBS-CLAIM-01", "NODES-READY-01", "SMB-POD-01", "EBS-CLEANUP-01")


def catalog(*clusters: str) -> list[str]:
    return [f"suites/test_x.py::test_{i}[{c}:{check}]"
            for c in clusters for i, check in enumerate(CHECKS)]


class Worker:
    """What the scheduler may use of xdist's WorkerController."""

    def __init__(self, name: str) -> None:
        self.gateway = SimpleNamespace(id=name)
        self.queue: list[int] = []
        self.shutting_down = False

    def send_runtest_some(self, indices: list[int]) -> None:
        assert not self.shutting_down, f"{self.gateway.id}: work sent after shutdown"
        self.queue.extend(indices)

    def shutdown(self) -> None:
        self.shutting_down = True

    def __repr__(self) -> str:
        return self.gateway.id


def fake_config(workers: int, reports: list[Any]) -> Any:
    """What the scheduler reads of pytest's config: `-n N` as xdist turns it into --tx."""
    return SimpleNamespace(
        getvalue=lambda name: {"tx": ["popen"] * workers}[name],
        hook=SimpleNamespace(pytest_collectreport=lambda report: reports.append(report)))


def start(collection: list[str], workers: int) -> tuple[ClusterScheduling, list[Worker]]:
    sched = ClusterScheduling(fake_config(workers, []))
    assert sched.numnodes == workers
    nodes = [Worker(f"gw{i}") for i in range(workers)]
    for node in nodes:
        sched.add_node(node)
    for node in nodes:
        sched.add_node_collection(node, collection)
    assert sched.collection_is_completed
    sched.schedule()
    return sched, nodes


def run_all(sched: ClusterScheduling, nodes: list[Worker]) -> dict[str, list[str]]:
    """Complete tests as workers would (each its queue in order, taking turns) until
    the scheduler says all is done; what each worker ran, by node id."""
    ran: dict[str, list[str]] = {n.gateway.id: [] for n in nodes}
    assert sched.collection is not None
    while not sched.tests_finished:
        busy = [n for n in sched.nodes if n.queue]
        assert busy, "tests left but no worker has any"
        for node in busy:
            index = node.queue.pop(0)
            ran[node.gateway.id].append(sched.collection[index])
            sched.mark_test_complete(node, index)
    for node in sched.nodes:  # the last test each holds until shutdown
        for index in node.queue:
            ran[node.gateway.id].append(sched.collection[index])
    return ran


def clusters_of(nodeids: list[str]) -> list[str]:
    return sorted({unit_of(n) for n in nodeids})


@pytest.mark.parametrize(("nodeid", "unit"), [
    ("suites/test_x.py::test_y[sim-1:EBS-PERSIST-01]", "cluster:sim-1"),
    ("suites/test_x.py::test_y[east:NODES-AMI-01]@east", "cluster:east"),  # xdist's suffix
    ("suites/test_x.py::test_y[ctx:a:b:SC-DEFAULT-01]", "cluster:ctx:a:b"),
    ("tests/test_x.py::test_y[2:ebs-attach-fails]", "test:tests/test_x.py::test_y"
                                                    "[2:ebs-attach-fails]"),
    ("tests/test_x.py::test_y", "test:tests/test_x.py::test_y"),
    ("tests/test_x.py::test_y@db", "group:db"),  # xdist_group under pytest 8's loadgroup
    ("tests/test_x.py::test_y[a@b]", "test:tests/test_x.py::test_y[a@b]"),
    ("tests/test_x.py::test_y[a@b]@db", "group:db"),
])
def test_a_cluster_is_read_from_the_check_id_and_nothing_else(nodeid: str, unit: str) -> None:
    assert unit_of(nodeid) == unit


@pytest.mark.parametrize(("workers", "clusters"), [(2, 2), (4, 2), (2, 3), (1, 2), (3, 5)])
def test_every_cluster_runs_on_one_worker_in_catalog_order(workers: int,
                                                           clusters: int) -> None:
    names = [f"sim-{i}" for i in range(1, clusters + 1)]
    collection = catalog(*names)
    sched, nodes = start(collection, workers)
    idle = [n for n in nodes if n not in sched.nodes]
    assert len(idle) == max(0, workers - clusters) and all(n.shutting_down for n in idle)
    for node in sched.nodes:  # the first unit is sent whole
        assert len(node.queue) >= len(CHECKS)
    ran = run_all(sched, nodes)
    assert sorted(n for per in ran.values() for n in per) == sorted(collection)
    where = {c: [w for w, per in ran.items() if f"cluster:{c}" in clusters_of(per)]
             for c in names}
    assert all(len(w) == 1 for w in where.values()), where
    for per in ran.values():
        assert per == sorted(per, key=collection.index), "not in catalog order"
    assert all(n.shutting_down for n in nodes)


def test_ordinary_tests_are_balanced_one_by_one() -> None:
    collection = [f"tests/test_a.py::test_{i}" for i in range(10)]
    sched, nodes = start(collection, 2)
    assert [len(n.queue) for n in nodes] == [2, 2]  # two each to start with, not five
    ran = run_all(sched, nodes)
    assert sorted(n for per in ran.values() for n in per) == sorted(collection)
    assert all(ran.values())


def test_a_dead_workers_test_is_lost_and_the_rest_of_its_cluster_moves_on() -> None:
    collection = catalog("sim-1", "sim-2")
    sched, (gw0, gw1) = start(collection, 2)
    first = gw0.queue.pop(0)
    sched.mark_test_complete(gw0, first)
    running = collection[gw0.queue[0]]
    rest = [collection[i] for i in gw0.queue[1:]]
    assert sched.remove_node(gw0) == running  # xdist reports it as crashed
    gw2 = Worker("gw2")  # xdist's replacement
    sched.add_node(gw2)
    sched.add_node_collection(gw2, collection)
    sched.schedule()
    ran = run_all(sched, [gw1, gw2])
    assert ran["gw2"] == rest, "the rest of the dead worker's cluster, together, in order"
    assert running not in ran["gw1"] + ran["gw2"], "a test that killed a worker is not rerun"


def test_no_worker_is_idle_while_a_unit_waits() -> None:
    collection = catalog("sim-1", "sim-2", "sim-3")
    sched, (gw0, gw1) = start(collection, 2)
    assert not sched.tests_finished and sched.has_pending
    assert clusters_of([collection[i] for i in gw0.queue]) == ["cluster:sim-1"]
    while not any("[sim-3:" in collection[i] for i in gw0.queue):
        sched.mark_test_complete(gw0, gw0.queue.pop(0))
    # sim-3 was sent when two of sim-1's checks were left, whole, behind them.
    assert [unit_of(collection[i]) for i in gw0.queue] == (
        ["cluster:sim-1"] * 2 + ["cluster:sim-3"] * len(CHECKS))
    assert clusters_of([collection[i] for i in gw1.queue]) == ["cluster:sim-2"]


def test_workers_that_collected_different_tests_run_nothing() -> None:
    reports: list[Any] = []
    sched = ClusterScheduling(fake_config(2, reports))
    gw0, gw1 = Worker("gw0"), Worker("gw1")
    for node in (gw0, gw1):
        sched.add_node(node)
    sched.add_node_collection(gw0, catalog("sim-1"))
    sched.add_node_collection(gw1, catalog("sim-2"))
    sched.schedule()
    assert gw0.queue == gw1.queue == []
    assert len(reports) == 1 and reports[0].failed and "gw1" in str(reports[0].longrepr)


def test_pending_lists_what_each_worker_has_not_finished_in_order() -> None:
    """What a signal may have interrupted on a worker whose reports the controller has not
    all heard yet (winstor.plugin.interrupt.STARTING)."""
    collection = catalog("sim-1", "sim-2")
    sched, (gw0, gw1) = start(collection, 2)
    assert sched.pending() == [[collection[i] for i in gw0.queue],
                               [collection[i] for i in gw1.queue]]
    sched.mark_test_complete(gw0, gw0.queue.pop(0))
    assert sched.pending()[0][0] == "suites/test_x.py::test_1[sim-1:NODES-READY-01]"
    assert ClusterScheduling(fake_config(2, [])).pending() == []  # nothing scheduled yet


@pytest.mark.parametrize("workers, clusters, advice", [
    (2, 16, "16 clusters on 2 workers: a worker checks its clusters one after another; "
            "-n 16 checks them side by side"),
    (1, 2, "2 clusters on 1 worker: a worker checks its clusters one after another; "
           "-n 2 checks them side by side"),
    (16, 16, None), (4, 2, None), (None, 2, None),  # enough workers; serial
])
def test_fewer_workers_than_clusters_are_advised_in_the_header(
        workers: int | None, clusters: int, advice: str | None) -> None:
    from winstor.plugin.hooks import _worker_advice

    config: Any = SimpleNamespace(option=SimpleNamespace(numprocesses=workers))
    assert _worker_advice(config, clusters) == advice
    config.workerinput = {}  # a worker's own header says nothing
    assert _worker_advice(config, clusters) is None
