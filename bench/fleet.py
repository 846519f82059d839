"""Many clusters in one run: the fleet part of the benchmark.

Vendors certify one AMI across regions and Kubernetes versions, and nightly CI runs a fleet
of clusters in one run. This part runs the whole catalog at the eks-like time scale on one
embedded cluster alone, then on N clusters in one run with W xdist workers (one cluster
per worker by default: a cluster's checks run on one worker, and each waits on its
cluster's slow objects, so clusters only overlap on separate workers), and reports wall
time, the CPU the run used, and memory: each pytest process's peak resident set
(`bench.procstats`) and the embedded cluster's.

The runs read and write bytecode caches as Python does by default (the 1-cluster run,
which goes first, writes what is missing), whatever the bench's own environment says:
a machine that sets PYTHONDONTWRITEBYTECODE makes every xdist worker compile winstor, the
suites and their imports again - for 16 workers on 2 cores, seconds before any cluster's
first check. One more 16-cluster run without any caches shows that cost, and the report
says whether the bench's environment had caching off.

Then the same fleet with one cluster broken (a scenario, `ebs-attach-fails` on cluster 7)
and one cluster unreachable (a kubeconfig context whose API server refuses connections),
to show that nothing is lost or leaked: every check of every cluster is reported once,
the broken cluster's EBS checks fail with the cause, the unreachable cluster's checks
error saying so, the others pass, and no object or EBS volume of the run is left.
"""

from __future__ import annotations

import os
import statistics
from typing import Any

from .catalog import CatalogRun, bytecode_state, run_catalog

BROKEN_SCENARIO = "ebs-attach-fails"
TARGET = 1.3


def measure(clusters: int, workers: list[int], scale: float, say: Any,
            rounds: int = 1) -> dict[str, Any]:
    """The fleet part. `rounds` > 1 runs that many more pairs of 1 cluster and the fleet
    (the first worker count), back to back, after the rest: on a shared machine one pair
    can land in a quiet minute and the next in a busy one, and the target's verdict is
    then the pairs' median ratio, with their range beside it."""
    say(f"fleet: 1 cluster at --time-scale {scale:g}, serial")
    one = run_catalog(1, 1, time_scale=scale, bytecode="cached")
    runs = []
    for w in workers:
        say(f"fleet: {clusters} clusters at --time-scale {scale:g}, -n {w}")
        runs.append(run_catalog(clusters, w, time_scale=scale, look_for_leaks=True,
                                bytecode="cached"))
    w = workers[0]
    say(f"fleet: {clusters} clusters at --time-scale {scale:g}, -n {w}, no bytecode caches")
    uncached = run_catalog(clusters, w, time_scale=scale, look_for_leaks=True, bytecode="none")
    broken_at = min(7, max(1, clusters - 1))
    say(f"fleet: {clusters - 1} clusters (cluster {broken_at}: {BROKEN_SCENARIO}) and one "
        f"unreachable, -n {w}")
    broken = run_catalog(clusters - 1, w, time_scale=scale,
                         scenarios=(f"{broken_at}:{BROKEN_SCENARIO}",), unreachable=1,
                         look_for_leaks=True, bytecode="cached")
    pairs = [{"one": round(one.wall, 3), "fleet": round(runs[0].wall, 3),
              "exit_codes": [one.exit_code, runs[0].exit_code],
              "fleet_cpu": runs[0].summary()["cpu_seconds"]}]
    for r in range(2, rounds + 1):
        say(f"fleet: round {r} of {rounds}: 1 cluster, then {clusters} with -n {w}")
        alone = run_catalog(1, 1, time_scale=scale, bytecode="cached")
        many = run_catalog(clusters, w, time_scale=scale, bytecode="cached")
        pairs.append({"one": round(alone.wall, 3), "fleet": round(many.wall, 3),
                      "exit_codes": [alone.exit_code, many.exit_code],
                      "fleet_cpu": many.summary()["cpu_seconds"]})
    return {"clusters": clusters, "time_scale": scale, "one": one.summary(), "rounds": pairs,
            "environment_bytecode": bytecode_state("inherit", dict(os.environ)),
            "fleet": [r.summary() for r in runs], "uncached": uncached.summary(),
            "broken": {**broken.summary(), "broken_cluster": f"sim-{broken_at}",
                       "scenario": BROKEN_SCENARIO, "verdict": judge_broken(
                           broken, one, f"sim-{broken_at}")}}


def catalog_size(run: CatalogRun | dict[str, Any]) -> int:
    checks = run.checks if isinstance(run, CatalogRun) else run["checks"]
    return max((sum(per.values()) for per in checks.values()), default=0)


def judge_broken(run: CatalogRun, one: CatalogRun, broken: str) -> list[str]:
    """What is wrong with the broken fleet's run ([] when nothing is lost or leaked)."""
    problems = []
    size = catalog_size(one)
    expected = [f"sim-{i}" for i in range(1, run.clusters + 1)] + [
        f"unreachable-{i}" for i in range(1, run.unreachable + 1)]
    for name in expected:
        per = run.checks.get(name, {})
        if sum(per.values()) != size:
            problems.append(f"{name}: {sum(per.values())} checks reported, not {size}")
    if run.duplicates:
        problems.append(f"reported twice: {', '.join(run.duplicates[:5])}")
    for name in expected:
        per = run.checks.get(name, {})
        if name.startswith("unreachable-") and set(per) - {"error"}:
            problems.append(f"{name}: {per} (every check should error: the cluster is down)")
        elif name == broken and not per.get("failed"):
            problems.append(f"{name}: no check failed under {BROKEN_SCENARIO}: {per}")
        elif name not in (broken,) and not name.startswith("unreachable-") and \
                set(per) - {"passed"}:
            problems.append(f"{name}: {per} (a healthy cluster should pass everything)")
    if run.leaks:
        problems.append(f"left behind: {', '.join(run.leaks[:5])}")
    return problems


def labelled(doc: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Each run of the fleet part with the name it has in the table and in the lines under it."""
    uncached = [(f"{r['clusters']} clusters, -n {r['workers']}, no bytecode caches", r)
                for r in [doc.get("uncached")] if r]
    return [("1 cluster, serial", doc["one"])] + [
        (f"{r['clusters']} clusters, -n {r['workers']}", r) for r in doc["fleet"]] + \
        uncached + [
        (f"{doc['broken']['clusters']} + 1 unreachable ({doc['broken']['broken_cluster']}: "
         f"{doc['broken']['scenario']}), -n {doc['broken']['workers']}", doc["broken"])]


def rows(doc: dict[str, Any], cores: int) -> list[tuple[Any, ...]]:
    """The fleet table: one row per run."""
    base = doc["one"]["wall_seconds"]
    out = []
    for label, run in labelled(doc):
        cpu = _cpu(run)
        mem = run.get("memory") or {}
        out.append((label, f"{run['wall_seconds']:.1f}", f"{run['wall_seconds'] / base:.2f}",
                    "-" if cpu is None else f"{cpu:.1f}",
                    "-" if cpu is None else f"{cpu / cores:.1f}",
                    _mb(mem.get("per_worker_max_mb")), _mb(mem.get("controller_mb")),
                    _mb(mem.get("sim_mb")), _mb(mem.get("total_mb"))))
    return out


def _round_cpu(pair: dict[str, Any]) -> str:
    """` (CPU 44 s)`: what the round's fleet run used, pytest and sim together - a slow
    round that used little CPU waited on something else."""
    cpu = _cpu({"cpu_seconds": pair.get("fleet_cpu") or {}})
    return "" if cpu is None else f" (CPU {cpu:.0f} s)"


def _mb(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def _cpu(run: dict[str, Any]) -> float | None:
    cpu = run.get("cpu_seconds") or {}
    if cpu.get("pytest") is None or cpu.get("sim") is None:
        return None
    return float(cpu["pytest"]) + float(cpu["sim"])


def targets(doc: dict[str, Any], cores: int) -> list[tuple[str, str, str]]:
    """The issue's fleet targets: wall time against one cluster, nothing lost or leaked."""
    out = []
    base = doc["one"]["wall_seconds"]
    pairs = doc.get("rounds") or []
    if len(pairs) > 1:
        ratios = sorted(p["fleet"] / p["one"] for p in pairs)
        median = statistics.median(ratios)
        failed = any(code != 0 for p in pairs for code in p["exit_codes"])
        out.append((f"{doc['fleet'][0]['clusters']} clusters -n {doc['fleet'][0]['workers']} "
                    f"<= {TARGET} x 1 cluster (time scale {doc['time_scale']:g}), median of "
                    f"{len(pairs)} rounds",
                    f"{median:.2f} x (rounds: " + ", ".join(
                        f"{p['fleet']:.1f}/{p['one']:.1f} s{_round_cpu(p)}" for p in pairs) +
                    f"; {ratios[0]:.2f}-{ratios[-1]:.2f} x)" + (
                        "; a run failed" if failed else ""),
                    "met" if median <= TARGET and not failed else "NOT MET"))
    for run in doc["fleet"]:
        q = run["wall_seconds"] / base
        cpu = _cpu(run)
        floor = "" if cpu is None else (f"; CPU {cpu:.0f} s, floor on {cores} cores "
                                        f"{cpu / cores:.0f} s = {cpu / cores / base:.2f} x")
        out.append((f"{run['clusters']} clusters -n {run['workers']} <= {TARGET} x 1 cluster "
                    f"(time scale {doc['time_scale']:g})",
                    f"{q:.2f} x ({run['wall_seconds']:.1f} s vs {base:.1f} s{floor})",
                    "met" if q <= TARGET else "NOT MET"))
        if run.get("leaks"):
            out.append(("  nothing left behind", ", ".join(run["leaks"][:3]), "NOT MET"))
    uncached = doc.get("uncached")
    if uncached:
        q = uncached["wall_seconds"] / base
        out.append((f"  the same without bytecode caches (-n {uncached['workers']})",
                    f"{q:.2f} x ({uncached['wall_seconds']:.1f} s)",
                    "met" if q <= TARGET else "NOT MET"))
    broken = doc["broken"]
    verdict = broken["verdict"]
    out.append((f"nothing lost or leaked with one cluster broken ({broken['scenario']}) and "
                "one unreachable", "; ".join(verdict[:3]) or (
                    f"{broken['clusters'] + 1} clusters, each check reported once, no object or "
                    "EBS volume left"), "NOT MET" if verdict else "met"))
    return out
