"""Whole runs of the suites: bare `pytest`, several clusters, `-n 2`, clusters files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import run_suite
from inspect_cluster import leftovers
from test_scenarios import ALL, EBS_WORKLOAD


def test_bare_pytest_passes_on_two_emulated_clusters(tmp_path: Path) -> None:
    result = run_suite([], tmp_path)
    assert result.code == 0, result.output[-3000:]
    assert set(result.outcomes) == {f"sim-{i}:{c}" for i in (1, 2) for c in ALL}
    assert set(result.outcomes.values()) == {"passed"}
    assert f"sim-1: {len(ALL)} passed, 0 failed, 0 errors, 0 skipped" in result.output
    assert f"sim-2: {len(ALL)} passed, 0 failed, 0 errors, 0 skipped" in result.output


def test_parallel_run_gives_serial_verdicts(sim_factory, tmp_path: Path) -> None:
    """Two contexts, one broken: `-n 2` and a serial run agree check by check,
    and neither leaves anything behind on either cluster."""
    sim = sim_factory(2, ["2:ebs-attach-fails"])
    args = [f"--kubeconfig={sim.kubeconfig}", "--context", "sim-1", "--context", "sim-2"]
    serial = run_suite(args, tmp_path, env=sim.aws_env)
    for ctx in ("sim-1", "sim-2"):
        assert leftovers(sim, ctx) == []
    parallel = run_suite([*args, "-n", "2"], tmp_path, env=sim.aws_env)
    assert serial.outcomes == parallel.outcomes
    assert set(serial.outcomes) == {f"sim-{i}:{c}" for i in (1, 2) for c in ALL}
    assert {k for k, v in serial.outcomes.items() if v == "failed"} == {
        f"sim-2:{c}" for c in EBS_WORKLOAD}
    for ctx in ("sim-1", "sim-2"):
        assert leftovers(sim, ctx) == []


@pytest.mark.parametrize(("workers", "clusters"), [("2", 2), ("4", 2), ("2", 3)])
def test_each_clusters_checks_run_on_one_worker(workers: str, clusters: int,
                                                tmp_path: Path) -> None:
    """`-n N`: results.json names the worker of every check, and each cluster's checks all
    ran on one (they share the cluster's objects, made under the run's names); several
    clusters share the workers, and nothing errors. (pytest 9 silently dropped xdist's
    loadgroup grouping, which split clusters and failed 14 checks with 409 AlreadyExists.)"""
    result = run_suite(["-n", workers, "--sim-clusters", str(clusters)], tmp_path)
    assert result.code == 0, result.story()
    doc = json.loads((tmp_path / "reports" / "latest" / "results.json").read_text())
    names = [f"sim-{i}" for i in range(1, clusters + 1)]
    assert {(c["cluster"], c["id"]) for c in doc["checks"]} == {(n, c) for n in names
                                                                for c in ALL}
    assert all(c["outcome"] == "passed" for c in doc["checks"]), doc["summary"]
    workers_of: dict[str, set[str]] = {}
    for check in doc["checks"]:
        assert check["worker"] and check["worker"].startswith("gw"), check
        workers_of.setdefault(check["cluster"], set()).add(check["worker"])
    assert all(len(w) == 1 for w in workers_of.values()), workers_of
    used = set().union(*workers_of.values())
    assert len(used) == min(clusters, int(workers)), workers_of


def test_a_serial_run_names_no_worker(tmp_path: Path) -> None:
    result = run_suite(["--sim-clusters", "1", "-k", "SC-"], tmp_path)
    assert result.code == 0, result.output[-3000:]
    doc = json.loads((tmp_path / "reports" / "latest" / "results.json").read_text())
    assert doc["checks"] and all(c["worker"] is None for c in doc["checks"])


def test_clusters_file_runs_the_catalog_on_each(sim_factory, tmp_path: Path) -> None:
    sim = sim_factory(2, [])
    clusters = tmp_path / "clusters.yaml"
    clusters.write_text(
        "clusters:\n"
        f"  - name: east\n    context: sim-1\n    kubeconfig: {sim.kubeconfig}\n"
        "    windows_build: '10.0.17763'\n"
        f"  - name: west\n    context: sim-2\n    kubeconfig: {sim.kubeconfig}\n"
        "    fsx: {host_path: 'G:\\Directory\\app-state'}\n")
    result = run_suite([f"--clusters={clusters}"], tmp_path, env=sim.aws_env)
    assert result.code == 0, result.output[-3000:]
    assert set(result.outcomes) == {f"{n}:{c}" for n in ("east", "west") for c in ALL}
    assert f"east: {len(ALL)} passed" in result.output
    assert f"west: {len(ALL)} passed" in result.output


def test_keep_on_failure_keeps_the_failing_clusters_objects(sim_factory, tmp_path: Path) -> None:
    """--keep-on-failure leaves a cluster with a failed check as it was - the
    namespaces with their pods, node probes and share pods included - says so,
    and `winstor janitor --run` removes it all after. (The claim is not among
    them here: EBS-CLEANUP-01 deletes it as what it checks.)"""
    import subprocess
    import sys

    from helpers import ROOT

    sim = sim_factory(2, ["1:smb-mapping-missing"])
    args = [f"--kubeconfig={sim.kubeconfig}", "--context", "sim-1", "--context", "sim-2",
            "--keep-on-failure", "--run-id", "keepme"]
    result = run_suite(args, tmp_path, env=sim.aws_env)
    assert result.outcomes["sim-1:SMB-MAP-01"] == "failed", result.output[-3000:]
    assert "kept (--keep-on-failure)" in result.output
    kept = leftovers(sim, "sim-1")
    assert "namespace/winstor-keepme" in kept and "namespace/winstor-keepme-host" in kept
    pods = {k.rsplit("/", 1)[1] for k in kept if k.startswith("pod/winstor-keepme-host/")}
    assert {"test-fsx", "test-fsx-reader", "winstor-node-probe-0"} <= pods, kept
    assert leftovers(sim, "sim-2") == []  # nothing failed there: cleaned as usual
    janitor = subprocess.run([sys.executable, "-m", "winstor", "janitor", "--run", "keepme",
                              f"--kubeconfig={sim.kubeconfig}", "--context", "sim-1"],
                             cwd=ROOT, capture_output=True, text=True, timeout=300,
                             env={**__import__("os").environ, **sim.aws_env})
    assert janitor.returncode == 0, janitor.stdout + janitor.stderr
    assert leftovers(sim, "sim-1") == []
