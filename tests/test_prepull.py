"""The run's image pulls (`winstor.plugin.prepull`): a cluster whose checks begin late has
the workloads' image pulled onto its nodes from the start of the run, only when its
selected checks need the image, and nothing of it is left at the end.

Watched from outside, with the official client: each cluster's namespaces and the pods in
the pull's namespace, every 20 ms while the run goes on.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from kubernetes import client, watch

from helpers import run_suite
from inspect_cluster import MANAGED, api_client, leftovers

SERVERCORE = "mcr.microsoft.com/windows/servercore:"


class Watcher:
    """When each `winstor-*-prepull` namespace and its pods were first seen, per cluster."""

    def __init__(self, sim, contexts: list[str]) -> None:
        self.apis = {c: client.CoreV1Api(api_client(sim, c)) for c in contexts}
        self.namespaces: dict[str, float] = {}
        self.pods: dict[str, dict] = {}
        self.run_pods: set[str] = set()  # any pod of the run, anywhere
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for ctx, v1 in self.apis.items():
                self.run_pods.update(
                    f"{ctx}/{p.metadata.namespace}/{p.metadata.name}"
                    for p in v1.list_pod_for_all_namespaces(label_selector=MANAGED).items)
                for ns in v1.list_namespace().items:
                    if ns.metadata.name.endswith("-prepull"):
                        self.namespaces.setdefault(ctx, time.time())
                        for pod in v1.list_namespaced_pod(ns.metadata.name).items:
                            self.pods.setdefault(f"{ctx}/{pod.metadata.name}", {
                                "node": pod.spec.node_selector.get("kubernetes.io/hostname"),
                                "images": [k.image for k in pod.spec.containers]})
            self._stop.wait(0.02)

    def __enter__(self) -> Watcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _first_check_start(tmp_path: Path) -> dict[str, float]:
    doc = json.loads((tmp_path / "reports" / "latest" / "results.json").read_text())
    out: dict[str, float] = {}
    for c in doc["checks"]:
        if c.get("start"):
            out[c["cluster"]] = min(out.get(c["cluster"], c["start"]), c["start"])
    return out


def _pull_spans(tmp_path: Path) -> dict[str, list[dict]]:
    """Per cluster, the report's timeline spans of the run's image pulls."""
    doc = json.loads((tmp_path / "reports" / "latest" / "results.json").read_text())
    return {c["name"]: [p for p in c["timeline"] if p["name"] == "image pull"
                        and "(pulled from the start of the run)" in p["detail"]]
            for c in doc["clusters"]}


def _builds(sim, ctx: str) -> dict[str, str]:
    """Windows node -> its build label."""
    v1 = client.CoreV1Api(api_client(sim, ctx))
    return {n.metadata.name: n.metadata.labels.get("node.kubernetes.io/windows-build", "")
            for n in v1.list_node(label_selector="kubernetes.io/os=windows").items}


def _pulled_on_every_node_of_one_build(sim, ctx: str, pods: dict[str, dict]) -> None:
    pulled = {p["node"] for k, p in pods.items() if k.startswith(f"{ctx}/")}
    builds = _builds(sim, ctx)
    assert pulled and pulled <= set(builds), (pulled, builds)
    build = {builds[n] for n in pulled}
    assert len(build) == 1, build
    assert pulled == {n for n, b in builds.items() if b in build}, (pulled, builds)
    assert all(any(SERVERCORE in i for i in p["images"]) for p in pods.values()), pods


def test_a_serial_run_pulls_the_next_clusters_image_before_its_checks(
        sim_factory, tmp_path: Path) -> None:
    sim = sim_factory(2, [])
    args = [f"--kubeconfig={sim.kubeconfig}", "--context", "sim-1", "--context", "sim-2",
            "-k", "EBS-PERSIST-01 or NODES-READY-01"]
    with Watcher(sim, ["sim-1", "sim-2"]) as seen:
        result = run_suite(args, tmp_path, env=sim.aws_env)
    assert result.code == 0, result.output[-3000:]
    starts = _first_check_start(tmp_path)
    # the first cluster's own head start begins at once: no pull of its own
    assert "sim-1" not in seen.namespaces, seen.namespaces
    assert seen.namespaces["sim-2"] < starts["sim-2"] - 0.5, (seen.namespaces, starts)
    _pulled_on_every_node_of_one_build(sim, "sim-2", seen.pods)
    # the report's timeline has the pull, which sim-2's own pods then found done
    spans = _pull_spans(tmp_path)
    assert spans["sim-1"] == [] and len(spans["sim-2"]) == len(
        [k for k in seen.pods if k.startswith("sim-2/")]), spans
    for ctx in ("sim-1", "sim-2"):
        assert leftovers(sim, ctx) == [], result.output[-3000:]


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_no_pull_where_the_selected_checks_run_no_pod(sim_factory, tmp_path: Path,
                                                      workers: list[str]) -> None:
    """StorageClass checks and node checks that read the API need no image: gigabytes are
    not pulled for them (NODES-BUILD-01 runs node probes, which pull it: not selected)."""
    sim = sim_factory(2, [])
    args = [f"--kubeconfig={sim.kubeconfig}", "--context", "sim-1", "--context", "sim-2",
            "-k", "SC- or NODES-READY-01 or NODES-AMI-01", *workers]
    with Watcher(sim, ["sim-1", "sim-2"]) as seen:
        result = run_suite(args, tmp_path, env=sim.aws_env)
    assert result.code == 0, result.output[-3000:]
    assert seen.namespaces == {}, seen.namespaces
    # nor does any cluster's head start begin the pods of the checks -k left out (it
    # did: the run's plugin noted what checks need before -k removed them)
    assert seen.run_pods == set(), seen.run_pods


def test_a_fleet_pulls_on_every_cluster_and_leaves_nothing(sim_factory, tmp_path: Path) -> None:
    """Under xdist the first worker begins every cluster's pull once it has collected,
    whichever worker runs the cluster's checks; the report's process sees each gone."""
    sim = sim_factory(3, [])
    names = ["sim-1", "sim-2", "sim-3"]
    args = [f"--kubeconfig={sim.kubeconfig}", *[a for n in names for a in ("--context", n)],
            "-k", "EBS-PERSIST-01 or CSIPROXY-SVC-01", "-n", "2"]
    with Watcher(sim, names) as seen:
        result = run_suite(args, tmp_path, env=sim.aws_env)
    assert result.code == 0, result.output[-3000:]
    starts = _first_check_start(tmp_path)
    assert set(seen.namespaces) == set(names), seen.namespaces
    # the third cluster waits for a free worker; its pull began long before
    assert seen.namespaces["sim-3"] < starts["sim-3"] - 0.5, (seen.namespaces, starts)
    for name in names:
        _pulled_on_every_node_of_one_build(sim, name, seen.pods)
    # gw0 pulled; the controller put each pull in its cluster's timeline
    assert all(_pull_spans(tmp_path)[n] for n in names), _pull_spans(tmp_path)
    for name in names:
        assert leftovers(sim, name) == [], result.output[-3000:]


def test_the_pulls_can_be_turned_off(sim_factory, tmp_path: Path) -> None:
    """`-p no:winstor-prepull` (the plugin's name): each cluster's own head start pulls."""
    sim = sim_factory(2, [])
    args = [f"--kubeconfig={sim.kubeconfig}", "--context", "sim-1", "--context", "sim-2",
            "-k", "EBS-PERSIST-01", "-p", "no:winstor-prepull"]
    with Watcher(sim, ["sim-1", "sim-2"]) as seen:
        result = run_suite(args, tmp_path, env=sim.aws_env)
    assert result.code == 0, result.output[-3000:]
    assert seen.namespaces == {}, seen.namespaces
    for ctx in ("sim-1", "sim-2"):
        assert leftovers(sim, ctx) == [], result.output[-3000:]


KILL_GW0 = '''
import os
import signal
import time

import pytest


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    if os.environ.get("PYTEST_XDIST_WORKER") != "gw0":
        return
    pulls = item.config.pluginmanager.get_plugin("winstor-prepull").pulls
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (
            len(pulls) == 2 and all(p.created for p in pulls.values())):
        time.sleep(0.05)
    time.sleep(1)  # the pods too
    os.kill(os.getpid(), signal.SIGKILL)
'''


def test_the_pulls_of_a_lost_worker_are_removed_by_the_controller(sim_factory,
                                                                  tmp_path: Path) -> None:
    """gw0 begins every cluster's pull, then dies (SIGKILL at its first check, once both
    pulls' objects exist) while the pulls are under way (the eks-like time scale: 12 s):
    its threads die with it, so the controller, told nothing by it, sees the pulls'
    namespaces gone on every cluster."""
    sim = sim_factory(2, [], extra_args=["--time-scale", "0.05"])
    (tmp_path / "kill_gw0.py").write_text(KILL_GW0)
    args = [f"--kubeconfig={sim.kubeconfig}", "--context", "sim-1", "--context", "sim-2",
            "-k", "EBS-PERSIST-01 or SC-DEFAULT-01", "-n", "2", "-p", "kill_gw0"]
    with Watcher(sim, ["sim-1", "sim-2"]) as seen:
        result = run_suite(args, tmp_path, env={**sim.aws_env, "PYTHONPATH": str(tmp_path)})
    assert "1 lost with a crashed worker" in result.output, result.output[-3000:]
    assert set(seen.namespaces) == {"sim-1", "sim-2"}, seen.namespaces
    assert {k.split("/")[0] for k in seen.pods} == {"sim-1", "sim-2"}, seen.pods
    for ctx in ("sim-1", "sim-2"):
        assert leftovers(sim, ctx) == [], result.output[-3000:]


RECORD = '''
import json
import os

import pytest


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session):
    pulls = session.config.pluginmanager.get_plugin("winstor-prepull").pulls
    with open(os.environ["WINSTOR_TEST_PULLS"], "w") as f:
        json.dump({name: {"created": p.created, "done": p.done.is_set(), "error": p.error}
                   for name, p in pulls.items()}, f)
'''


def test_a_serial_run_on_the_embedded_cluster_pulls_too(tmp_path: Path) -> None:
    """Bare `pytest` starts its embedded cluster on the first check; the pulls, begun at
    collection, start it themselves (else they would read no kubeconfig at all)."""
    (tmp_path / "record_pulls.py").write_text(RECORD)
    out = tmp_path / "pulls.json"
    result = run_suite(["--sim-clusters", "2", "-k", "EBS-PERSIST-01", "-p", "record_pulls"],
                       tmp_path, env={"PYTHONPATH": str(tmp_path),
                                      "WINSTOR_TEST_PULLS": str(out)})
    assert result.code == 0, result.output[-3000:]
    assert json.loads(out.read_text()) == {
        "sim-2": {"created": True, "done": True, "error": None}}


class Holder(threading.Thread):
    """Holds a cluster's pull namespace up: the moment it appears, a ConfigMap with a
    finalizer no one removes is put in it (`release` removes the finalizer again)."""

    def __init__(self, sim, ctx: str) -> None:
        super().__init__(daemon=True)
        self.v1 = client.CoreV1Api(api_client(sim, ctx))
        self.held: str | None = None
        self.missed: list[str] = []
        self.seen: dict[str, float] = {}  # namespace and whether deleting -> first seen
        self.t0 = time.time()
        self._halt = threading.Event()

    def run(self) -> None:
        # A watch, not a poll: under a loaded machine a LIST every 10 ms could miss a pull
        # namespace that lived a second ("never held: []" once in CI).
        while not self._halt.is_set() and self.held is None:
            w = watch.Watch()
            for ev in w.stream(self.v1.list_namespace, timeout_seconds=1):
                ns = ev["object"]
                if ns.metadata.name.endswith("-prepull"):
                    self.seen.setdefault(f"{ns.metadata.name} {ev['type']} deleting: "
                                         f"{bool(ns.metadata.deletion_timestamp)}",
                                         round(time.time() - self.t0, 3))
                if ns.metadata.name.endswith("-prepull") and ev["type"] != "DELETED" \
                        and not ns.metadata.deletion_timestamp:
                    try:
                        self.v1.create_namespaced_config_map(ns.metadata.name, client.V1ConfigMap(
                            metadata=client.V1ObjectMeta(name="held",
                                                         finalizers=["example.com/x"])))
                    except client.ApiException as err:  # being deleted already: too late
                        self.missed.append(f"{err.status} {err.reason}")
                    else:
                        self.held = ns.metadata.name
                if self._halt.is_set() or self.held is not None:
                    w.stop()

    def release(self) -> None:
        self._halt.set()
        self.join()
        if self.held:
            self.v1.patch_namespaced_config_map("held", self.held, {"metadata": {
                "finalizers": None}})


def test_a_pull_namespace_that_does_not_go_is_reported(sim_factory, tmp_path: Path) -> None:
    """The first worker waits (bounded) for each pull's namespace to go and tells the
    controller which it did not see gone; the controller waits for those once more and
    reports what holds them as the cluster's leftovers. Here someone else's finalizer
    holds sim-2's."""
    sim = sim_factory(2, [], extra_args=["--time-scale", "0.01"])
    timeouts = tmp_path / "timeouts.yaml"
    timeouts.write_text("base: sim\nnamespace_delete: 1\n")
    args = [f"--kubeconfig={sim.kubeconfig}", "--context", "sim-1", "--context", "sim-2",
            f"--timeouts={timeouts}", "-k", "EBS-PERSIST-01", "-n", "2"]
    holder = Holder(sim, "sim-2")
    holder.start()
    try:
        result = run_suite(args, tmp_path, env=sim.aws_env, timeout=180)
    finally:
        holder.release()
    assert holder.held, (
        f"the pull's namespace was never held: {holder.missed} {holder.seen}\n"
        + result.output[-3000:])
    assert result.code == 0, result.output[-3000:]
    left = [ln for ln in result.output.splitlines() if "LEFT BEHIND" in ln]
    assert left and all("sim-2" in ln for ln in left), result.output[-3000:]
    assert any(holder.held in ln for ln in result.output.splitlines()
               if "sim-2" in ln), result.output[-3000:]
    doc = json.loads((tmp_path / "reports" / "latest" / "results.json").read_text())
    ends = {c["name"]: json.dumps(c) for c in doc["clusters"]}
    assert holder.held in ends["sim-2"] and holder.held not in ends["sim-1"], ends


def test_the_end_of_the_run_looks_only_at_pulls_not_seen_gone() -> None:
    """`PrePulls.begun`: a pull whose namespace its thread saw gone needs no look at the
    end of the run; one not yet over, or whose namespace did not go, does."""
    from winstor.cluster.prepull import PrePull
    from winstor.plugin.prepull import PrePulls

    def pull(created: bool, done: bool, gone: bool) -> PrePull:
        p = PrePull(cluster=None, created=created, gone=gone)  # type: ignore[arg-type]
        if done:
            p.done.set()
        return p

    plugin = PrePulls.__new__(PrePulls)
    plugin.pulls = {"gone": pull(True, True, True), "held": pull(True, True, False),
                    "running": pull(True, False, False), "nothing": pull(False, True, False),
                    "starting": pull(False, False, False)}
    assert plugin.begun() == ["held", "running", "starting"]


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_a_pull_that_fails_is_noted_on_its_cluster(sim_factory, tmp_path: Path,
                                                   workers: list[str]) -> None:
    """It decides nothing (the checks' own pods meet the same failure and fail), but the
    cluster's report and the terminal say why the pull begun for it failed."""
    sim = sim_factory(2, ["2:image-pull-fails"])
    args = [f"--kubeconfig={sim.kubeconfig}", "--context", "sim-1", "--context", "sim-2",
            "-k", "EBS-PERSIST-01", *workers]
    result = run_suite(args, tmp_path, env=sim.aws_env)
    assert result.outcomes == {"sim-1:EBS-PERSIST-01": "passed",
                               "sim-2:EBS-PERSIST-01": "failed"}, result.story()
    doc = json.loads((tmp_path / "reports" / "latest" / "results.json").read_text())
    notes = {c["name"]: [n for n in c["notes"]["notes"] if "from the start of the run" in n]
             for c in doc["clusters"]}
    assert notes["sim-1"] == [] and len(notes["sim-2"]) == 1, notes
    assert "ImagePullBackOff" in notes["sim-2"][0] or "ErrImagePull" in notes["sim-2"][0], notes
    assert "from the start of the run failed" in result.output, result.output[-3000:]


STARTS = '''
import json
import os
import time

import pytest


def _write(line):
    with open(os.environ["WINSTOR_TEST_STARTS"], "a") as f:
        f.write(json.dumps(line) + "\\n")


def pytest_configure(config):
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None:
        _write({"worker": workerinput["workerid"], "at": time.time(),
                "told": workerinput.get("winstor_prepull_begun")})


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session):
    path = (getattr(session.config, "workerinput", None) or {}).get("winstor_prepull_begun")
    if path:
        pulls = session.config.pluginmanager.get_plugin("winstor-prepull").pulls
        _write({"begun_at": os.stat(path).st_mtime,
                "pulls": {name: p.begun.is_set() for name, p in pulls.items()}})
'''


def test_the_other_workers_start_once_the_first_has_begun_the_pulls(sim_factory,
                                                                      tmp_path: Path) -> None:
    """The controller holds every worker but the first until the first has created every
    cluster's pull pods (it says so with a file the controller names), so that the pulls -
    the longest step of each cluster - are not held up by the others starting; the file's
    folder goes with the run."""
    sim = sim_factory(3, [])
    (tmp_path / "record_starts.py").write_text(STARTS)
    out = tmp_path / "starts.jsonl"
    args = [f"--kubeconfig={sim.kubeconfig}", "--context", "sim-1", "--context", "sim-2",
            "--context", "sim-3", "-k", "EBS-PERSIST-01", "-n", "3", "-p", "record_starts"]
    result = run_suite(args, tmp_path, env={**sim.aws_env, "PYTHONPATH": str(tmp_path),
                                            "WINSTOR_TEST_STARTS": str(out)})
    assert result.code == 0, result.output[-3000:]
    lines = [json.loads(ln) for ln in out.read_text().splitlines()]
    starts = {ln["worker"]: ln for ln in lines if "worker" in ln}
    (begun,) = [ln for ln in lines if "begun_at" in ln]
    assert set(starts) == {"gw0", "gw1", "gw2"}, lines
    assert starts["gw0"]["told"] and not starts["gw1"]["told"] and not starts["gw2"]["told"]
    assert begun["pulls"] == {"sim-1": True, "sim-2": True, "sim-3": True}, begun
    assert starts["gw1"]["at"] >= begun["begun_at"] and starts["gw2"]["at"] >= begun["begun_at"]
    assert not Path(starts["gw0"]["told"]).parent.exists(), "the hold's folder was left"


def test_the_hold_of_the_other_workers_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """A first worker that never says its pulls began (lost, or slow) holds the others for
    at most HOLD_SECONDS, counted from its own start; the first is never held."""
    from types import SimpleNamespace

    from winstor.plugin import prepull as plugin

    monkeypatch.setattr(plugin, "HOLD_SECONDS", 0.3)
    pulls = plugin.PrePulls.__new__(plugin.PrePulls)
    pulls.begun_file = None
    first = SimpleNamespace(workerinput={"workerid": "gw0"})
    pulls.pytest_configure_node(first)
    assert first.workerinput[plugin.BEGUN] == str(pulls.begun_file)
    try:
        started = time.monotonic()
        pulls.pytest_xdist_newgateway(SimpleNamespace(id="gw0"))
        assert time.monotonic() - started < 0.1
        pulls.pytest_xdist_newgateway(SimpleNamespace(id="gw1"))
        assert 0.2 < time.monotonic() - started < 2.0
        pulls.pytest_xdist_newgateway(SimpleNamespace(id="gw2"))  # the bound is spent
        assert time.monotonic() - started < 2.0
        again = SimpleNamespace(workerinput={"workerid": "gw0"})  # a replacement gw0
        pulls.pytest_configure_node(again)
        assert plugin.BEGUN not in again.workerinput
    finally:
        pulls.pytest_unconfigure(None)  # type: ignore[arg-type]
    assert not pulls.begun_file.parent.exists()
