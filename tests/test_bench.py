"""The benchmark's own checks: its table is whole, and its numbers are the sim's.

Nothing here asserts how fast anything is - speed is what `python -m bench`
measures and prints. These tests show that the figures it prints are read from
the embedded cluster's counters (a known workload moves them by known
amounts), that the critical-path arithmetic is the documented one, and that
the polling switch of the waits is a switch: off by default, and when on it
polls instead of watching.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench import __main__ as bench_main
from bench import faults
from bench.catalog import ROOT, CatalogRun
from bench.simmetrics import Costs, costs, parse, scrape
from winstor.cluster import waits
from winstor.cluster.kube import EVENTS, PODS, Api
from winstor.config import HOSTPROCESS_IMAGE, Timeouts
from winstor.sim.timing import EKS_LATENCY, MINIMUM_PARTS, Clock, Union, minimum_critical_seconds

SERVERCORE = "mcr.microsoft.com/windows/servercore:ltsc2019"
TARGETS = ("<= 4 Windows pod starts per cluster", "exactly 1 EBS volume per cluster",
           "1 image pull on the critical path", "modelled critical path <= 1.3 x minimum",
           "4 clusters -n 4 <= 1.5 x 1 cluster", "fault detection within 5 % of the timeout",
           "API requests <= 0.3 x polling", "winstor sim up ready < 2 s",
           "exec round trip < 20 ms")


# -- the critical-path arithmetic ----------------------------------------------------------
def test_union_counts_overlaps_once_and_numbers_waves() -> None:
    u = Union()
    for start, end in [(0, 240), (1, 241), (100, 110), (241, 256), (300, 306)]:
        u.add(start, end)
    assert u.covered == 256 + 6
    # A span that starts where the last one ended did not overlap it: a new wave.
    assert u.waves == 3
    assert [list(r) for r in u.runs] == [[0, 241], [241, 256], [300, 306]]


def test_clock_without_sleeping_counts_each_operation_in_full() -> None:
    clock = Clock(scale=0)

    async def work() -> None:
        await asyncio.gather(clock.spend("image_pull:servercore"),
                             clock.spend("image_pull:servercore"), clock.spend("ebs_attach"))
    asyncio.run(work())
    samples = clock.samples("sim-9")
    assert samples['winstor_sim_modelled_critical_seconds_total{cluster="sim-9"}'] == 492
    key = 'cluster="sim-9",what="image_pull:servercore"'
    assert samples[f"winstor_sim_modelled_operations_total{{{key}}}"] == 2
    assert samples[f"winstor_sim_modelled_seconds_total{{{key}}}"] == 480
    assert len(clock.spans) == 3


def test_clock_counts_parallel_operations_once() -> None:
    clock = Clock(scale=0.001)

    async def work() -> None:
        await asyncio.gather(*(clock.spend("image_pull:servercore") for _ in range(3)))
        await clock.spend("ebs_attach")
    asyncio.run(work())
    # Three pulls side by side, then an attach: one wave of pulls, and a critical path
    # of one pull plus the attach (the spans start microseconds apart, not 240 s).
    assert clock.by_kind["image_pull:servercore"].waves == 1
    assert 252 <= clock.critical.covered < 2 * 240
    assert clock.modelled["image_pull:servercore"] == 720


def test_minimum_is_the_sims_own_latencies() -> None:
    assert minimum_critical_seconds() == (
        EKS_LATENCY["image_pull:servercore"]
        + 2 * (EKS_LATENCY["pod_sandbox:windows"] + EKS_LATENCY["container_start:windows"])
        + EKS_LATENCY["ebs_attach"] + EKS_LATENCY["ebs_detach"])
    assert dict(MINIMUM_PARTS)["image_pull:servercore"] == 1


# -- the numbers come from the sim ---------------------------------------------------------
def _pod(name: str, image: str, host_process: bool = False) -> dict:
    spec: dict = {"nodeSelector": {"kubernetes.io/os": "windows"},
                  "containers": [{"name": "c", "image": image,
                                  "command": ["ping", "-t", "localhost"]}]}
    if host_process:
        spec["hostNetwork"] = True
        spec["securityContext"] = {"windowsOptions": {"hostProcess": True,
                                                      "runAsUserName": "NT AUTHORITY\\SYSTEM"}}
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default"}, "spec": spec}


def test_costs_are_what_the_sim_counted(sim_factory) -> None:
    """A known workload - one servercore pod, one HostProcess pod - moves the
    counters the table is made of by exactly that much."""
    sim = sim_factory(1)
    api = Api.from_kubeconfig(str(sim.kubeconfig), "sim-1")
    before = scrape(api)
    for pod in (_pod("bench-workload", SERVERCORE), _pod("bench-probe", HOSTPROCESS_IMAGE, True)):
        api.create(PODS, pod, "default")
    for name in ("bench-workload", "bench-probe"):
        waits.wait_for(api, PODS, name, "default", condition=waits.pod_ready,
                       what=f"pod {name}", timeout=60)
    got = costs("sim-1", before, scrape(api))
    assert got.requests_by["CREATE pods"] == 2
    assert got.requests == sum(got.requests_by.values())
    assert (got.windows_workload_starts, got.windows_hostprocess_starts) == (1, 1)
    assert got.servercore_pulls == 1 and got.servercore_pull_waves == 1
    assert got.operations["pod_sandbox:windows"] == 2
    pull = EKS_LATENCY["image_pull:servercore"]
    assert pull <= got.critical_seconds <= sum(got.modelled_seconds.values())
    assert got.time_scale == 0.002 and got.busy
    assert got.volumes_provisioned == 0
    # Events carry the microsecond time the fault benchmark measures from.
    stamps = [e.get("eventTime") for e in api.items(EVENTS, "default")]
    assert stamps and all(s and len(s.split(".")[-1]) == 7 for s in stamps)  # 6 digits + Z


def test_metrics_parse_and_subtract() -> None:
    before = parse('apiserver_request_total{verb="GET",group="",resource="",code="200"} 3\n'
                   '# HELP x y\nwinstor_sim_pod_starts_total{os="windows",kind="workload"} 1\n')
    after = parse('apiserver_request_total{verb="GET",group="",resource="",code="200"} 5\n'
                  'apiserver_request_total{verb="LIST",group="",resource="pods",code="200"} 2\n'
                  'winstor_sim_pod_starts_total{os="windows",kind="workload"} 4\n')
    got = costs("c", before, after)
    assert got.requests == 3  # 2 + 2, less the benchmark's own reading
    assert got.requests_by == {"GET (other)": 1, "LIST pods": 2}
    assert got.windows_workload_starts == 3


# -- the report ------------------------------------------------------------------------------
def test_quick_report_is_whole_and_from_the_sim(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "-m", "bench", "--quick", "--json", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = proc.stdout
    for heading in ("Catalog wall time", "Per cluster, from its /metrics",
                    "Targets (issue #7, set on the seed catalog)"):
        assert heading in text
    for target in TARGETS:
        assert target in text, target
    doc = json.loads(out.read_text())
    (run,) = doc["catalog"]
    assert (run["clusters"], run["workers"], run["exit_code"]) == (1, 1, 0)
    # Issue #7's targets are measured on the checks they were set for: the seed's 20.
    assert doc["catalog_choice"] == run["catalog"] == "seed"
    assert run["checks"] == {"sim-1": {"passed": 20}}
    assert "the seed catalog (issue #7's 20 checks" in text
    c = run["per_cluster"]["sim-1"]
    assert c["requests"] == sum(c["requests_by"].values()) > 0
    assert c["pod_starts"].get("windows/workload", 0) >= 1
    assert c["objects_created"]["PersistentVolume"] >= 1
    assert c["operations"]["image_pull:servercore"] >= c["waves"]["image_pull:servercore"] >= 1
    assert max(c["union_seconds"].values()) <= c["critical_seconds"] <= sum(
        c["modelled_seconds"].values()) + 1e-6
    assert doc["minimum_seconds"] == minimum_critical_seconds()
    # The table prints what was measured, not something else.
    row = next(line for line in text.splitlines() if line.startswith("1x1 "))
    w, h = c["pod_starts"].get("windows/workload", 0), c["pod_starts"].get(
        "windows/hostprocess", 0)
    assert f" {c['requests']} " in row and f"{w + h} ({w} + {h})" in row
    assert f"{c['critical_seconds']:.0f}" in row
    assert "not measured" in text  # the parts --quick leaves out say so
    # CPU: the pytest process and its children (from rusage), and the sim's from /proc.
    cpu = run["cpu_seconds"]
    assert cpu["pytest"] > 0 and cpu["sim"] is not None and cpu["sim"] > 0
    wall_row = next(line for line in text.splitlines() if line.startswith("1         1 "))
    assert f"{cpu['pytest'] + cpu['sim']:.1f}" in wall_row


# -- fault-detection arithmetic ---------------------------------------------------------------
def test_fault_analysis_times_from_the_named_event() -> None:
    cost = Costs("sim-1", time_scale=0.002, busy=[(100.2, 100.4)])
    failure = {"nodeid": "suites/x.py::t[sim-1:EBS-BIND-01]", "when": "call", "start": 100.0,
               "stop": 101.0, "text": "a Ready pod of deployment ns/app cannot happen: the "
                                      "image cannot be pulled — Warning Failed on pod/app-1 "
                                      "(x2): Error: ImagePullBackOff"}
    events = [{"time": 99.0, "time_source": "eventTime", "type": "Warning", "reason": "Failed",
               "message": 'Failed to pull image "x"', "object": "pod/other", "namespace": "n"},
              {"time": 100.1, "time_source": "eventTime", "type": "Warning", "reason": "Failed",
               "message": 'Failed to pull image "x"', "object": "pod/app-1", "namespace": "n"}]
    run = CatalogRun(1, 1, ["image-pull-fails"], "watch", 0.002, 5.0, 1, {"sim-1": cost},
                     [failure], {"sim-1": events})
    row = faults.analyse("image-pull-fails", run, Timeouts.profile("sim"))
    assert row["event"] == "Warning Failed on pod/app-1"
    assert row["seconds"] == pytest.approx(0.9)
    assert row["timeout"] == 90 and row["fraction"] == pytest.approx(0.01)
    assert row["how"] == "terminal event"
    # 0.2 s of the gap had modelled work in progress: 100 s on EKS, plus 0.7 s as measured.
    assert row["modelled_in_gap"] == pytest.approx(100)
    assert row["eks_seconds"] == pytest.approx(100.7, abs=0.1)
    assert row["eks_timeout"] == 900
    assert row["eks_low_fraction"] == pytest.approx(0.9 / 900)


# -- the polling switch ------------------------------------------------------------------------
def test_wait_strategy_is_watch_unless_asked(monkeypatch) -> None:
    monkeypatch.delenv(waits.WAIT_STRATEGY_ENV, raising=False)
    assert waits.wait_strategy() == "watch"
    monkeypatch.setenv(waits.WAIT_STRATEGY_ENV, "poll")
    assert waits.wait_strategy() == "poll"
    monkeypatch.setenv(waits.WAIT_STRATEGY_ENV, "sometimes")
    with pytest.raises(ValueError, match="watch or poll"):
        waits.wait_strategy()
    monkeypatch.setenv(waits.POLL_INTERVAL_ENV, "-1")
    with pytest.raises(ValueError, match="positive"):
        waits.poll_interval()


def test_polling_reads_events_only_when_waiting_for_one() -> None:
    def claim_like(ev: dict) -> str | None:
        return waits.default_terminal_event(ev) or None

    def first_event(ev: dict) -> str | None:
        return "seen" if ev.get("reason") == "WaitForFirstConsumer" else None
    assert not waits._waits_for_an_event(waits.default_terminal_event)
    assert not waits._waits_for_an_event(waits.no_terminal_event)
    assert not waits._waits_for_an_event(claim_like)
    assert waits._waits_for_an_event(first_event)


def test_poll_strategy_polls_instead_of_watching(sim_factory, monkeypatch) -> None:
    sim = sim_factory(1)
    api = Api.from_kubeconfig(str(sim.kubeconfig), "sim-1")
    api.create(PODS, _pod("bench-poll", SERVERCORE), "default")
    monkeypatch.setenv(waits.WAIT_STRATEGY_ENV, "poll")
    monkeypatch.setenv(waits.POLL_INTERVAL_ENV, "0.05")
    before = scrape(api)
    result = waits.wait_for(api, PODS, "bench-poll", "default", condition=waits.pod_ready,
                            what="pod bench-poll", timeout=60)
    got = costs("sim-1", before, scrape(api))
    assert waits.pod_ready(result.obj)
    assert got.requests_by.get("GET pods", 0) >= 1
    assert not any(k.startswith("WATCH") for k in got.requests_by), got.requests_by
    assert "LIST events" not in got.requests_by
    monkeypatch.setenv(waits.WAIT_STRATEGY_ENV, "watch")
    before = scrape(api)
    waits.wait_for(api, PODS, "bench-poll", "default", condition=waits.pod_ready,
                   what="pod bench-poll", timeout=60)
    got = costs("sim-1", before, scrape(api))
    assert got.requests_by.get("WATCH pods", 0) >= 1 or got.requests_by.get("LIST pods", 0) >= 1
    with pytest.raises(waits.WaitFailed, match="polled"):
        monkeypatch.setenv(waits.WAIT_STRATEGY_ENV, "poll")
        waits.wait_for(api, PODS, "bench-poll", "default", condition=lambda o: False,
                       what="a pod that never changes", timeout=0.2)


@pytest.mark.parametrize("args, message", [
    (["--clusters", "0"], "argument --clusters: must be at least 1: 0"),
    (["--max-workers", "x"], "argument --max-workers: not a whole number: 'x'"),
    (["--rounds", "-1"], "argument --rounds: must be at least 1: -1"),
    (["--poll-interval", "0"], "argument --poll-interval: must be a positive number: 0"),
    (["--eks-like-scale", "inf"], "argument --eks-like-scale: must be a positive number: inf"),
    (["--parts", "catalog,nope"], "unknown part(s) nope"),
    (["--catalog", "all"], "argument --catalog: invalid choice: 'all'"),
    (["--json", "/nonexistent-dir/out.json"], "--json: cannot write in /nonexistent-dir"),
])
def test_bad_arguments_are_one_line_before_any_measuring(args: list[str], message: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "bench", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert message in proc.stderr.splitlines()[-1]
    assert "Traceback" not in proc.stderr
    assert not any(line.startswith("... ") for line in proc.stderr.splitlines())  # measuring


# -- many clusters ----------------------------------------------------------------------------
def test_fleet_reports_memory_and_finds_nothing_lost_or_leaked(tmp_path: Path) -> None:
    """The fleet part on a small fleet (2 clusters, the default time scale): the runs'
    memory is each process's own peak, the broken fleet's verdict comes from what its
    results.json recorded and what its clusters and moto still hold."""
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "-m", "bench", "--parts", "fleet", "--fleet-clusters",
                           "2", "--eks-like-scale", "0.002", "--fleet-rounds", "2",
                           "--json", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(out.read_text())["fleet"]
    (run,) = doc["fleet"]
    assert (run["clusters"], run["workers"], run["exit_code"]) == (2, 2, 0)
    mem = run["memory"]
    workers = [p for p in run["processes"] if p["role"] == "worker"]
    assert mem["workers"] == len(workers) == 2, run["processes"]
    assert mem["per_worker_max_mb"] == max(p["max_rss_mb"] for p in workers) > 20
    assert mem["sim_mb"] > 20 and mem["controller_mb"] > 20
    assert mem["total_mb"] == pytest.approx(sum(p["max_rss_mb"] for p in run["processes"])
                                            + mem["sim_mb"], abs=0.2)
    assert run["leaks"] == [] and run["duplicates"] == []
    broken = doc["broken"]
    assert broken["verdict"] == [], broken["verdict"]
    size = sum(doc["one"]["checks"]["sim-1"].values())
    assert broken["checks"]["unreachable-1"] == {"error": size}
    assert broken["checks"]["sim-1"].get("failed"), broken["checks"]  # ebs-attach-fails
    text = proc.stdout
    assert "Many clusters in one run" in text and "MB per worker (max)" in text
    assert "nothing lost or leaked with one cluster broken" in text
    row = next(line for line in text.splitlines() if line.startswith("2 clusters, -n 2 "))
    assert f"{mem['per_worker_max_mb']:.0f}" in row and f"{mem['total_mb']:.0f}" in row
    # Python's default caches for the runs, and one run without any, each saying so
    assert run["bytecode"] == doc["one"]["bytecode"] == "written and read (Python's default)"
    uncached = doc["uncached"]
    assert uncached["bytecode"].startswith("none") and uncached["exit_code"] == 0
    assert "2 clusters, -n 2, no bytecode caches" in text
    assert "the same without bytecode caches (-n 2)" in text
    assert "CPU speed (a fixed Python loop, lower is faster)" in text
    # a second round of 1 cluster and the fleet, the verdict their median
    assert [p["exit_codes"] for p in doc["rounds"]] == [[0, 0], [0, 0]]
    assert doc["rounds"][0]["fleet"] == run["wall_seconds"]
    assert "2 clusters -n 2 <= 1.3 x 1 cluster (time scale 0.002), median of 2 rounds" in text
    # each run's CPU-per-worker line under the table names the run as its row does
    assert "  2 clusters, -n 2: CPU per worker " in text
    assert "  2 clusters, -n 2, no bytecode caches: CPU per worker " in text


def test_bytecode_settings_of_a_run(tmp_path: Path) -> None:
    from bench.catalog import bytecode_env, bytecode_state

    env = {"PYTHONDONTWRITEBYTECODE": "1", "PYTHONPYCACHEPREFIX": "/elsewhere", "HOME": "/h"}
    assert bytecode_env("inherit", tmp_path, env) == env
    assert bytecode_env("cached", tmp_path, env) == {"HOME": "/h"}
    none = bytecode_env("none", tmp_path, env)
    assert none["PYTHONDONTWRITEBYTECODE"] == "1" and Path(none["PYTHONPYCACHEPREFIX"]).is_dir()
    assert list(Path(none["PYTHONPYCACHEPREFIX"]).iterdir()) == [] and none["HOME"] == "/h"
    assert env["PYTHONPYCACHEPREFIX"] == "/elsewhere", "the caller's environment is kept"
    with pytest.raises(ValueError, match="one of inherit, cached, none"):
        bytecode_env("sometimes", tmp_path, env)
    assert bytecode_state("inherit", {"PYTHONDONTWRITEBYTECODE": "1"}).startswith("read, never")
    assert bytecode_state("cached", {}) == "written and read (Python's default)"


def test_a_broken_fleet_with_a_lost_or_leaked_check_is_not_met() -> None:
    from bench.catalog import CatalogRun
    from bench.fleet import judge_broken

    def run(checks: dict, leaks: list[str] | None = None, clusters: int = 2) -> CatalogRun:
        return CatalogRun(clusters, 2, [], "watch", 0.002, 1.0, 1, {}, checks=checks,
                          unreachable=1, leaks=leaks or [])
    one = run({"sim-1": {"passed": 3}}, clusters=1)
    good = {"sim-1": {"passed": 2, "failed": 1}, "sim-2": {"passed": 3},
            "unreachable-1": {"error": 3}}
    assert judge_broken(run(good), one, "sim-1") == []
    lost = {**good, "sim-2": {"passed": 2}}
    assert "sim-2: 2 checks reported, not 3" in judge_broken(run(lost), one, "sim-1")
    assert any("left behind" in p for p in judge_broken(run(good, ["aws: ebs/vol-1"]), one,
                                                         "sim-1"))
    healthy_failing = {**good, "sim-2": {"passed": 2, "error": 1}}
    assert any(p.startswith("sim-2:") for p in judge_broken(run(healthy_failing), one, "sim-1"))


def test_the_report_of_every_measured_part_renders() -> None:
    """`report` on what a run of every part but fleet and controlplane measured (trimmed:
    two catalog runs, two fault scenarios): every section and every target row prints
    from its figures. (The polling section once crashed on a helper that another of the
    same name had replaced, after minutes of measuring.)"""
    doc = json.loads((Path(__file__).parent / "data" / "bench-measured.json").read_text())
    text = bench_main.report(doc)
    for heading in ("Catalog wall time", "Per cluster, from its /metrics", "Fault detection",
                    "Polling baseline", "Embedded cluster",
                    "Targets (issue #7, set on the seed catalog)", "Targets (issue #16"):
        assert heading in text, heading
    poll = doc["poll"]
    watch_requests = poll["watch"]["per_cluster"]["sim-1"]["requests"]
    for run in poll["runs"]:
        polled = run["per_cluster"]["sim-1"]["requests"]
        assert f"{watch_requests / polled:.2f}" in text
    targets = text.split("Targets (issue #7")[1]
    assert "not measured" not in targets.split("Targets (issue #16")[0]


def test_with_several_rounds_the_fleet_verdict_is_their_median_with_the_range() -> None:
    """`--fleet-rounds`: one pair landing in a quiet minute does not make the target met,
    nor one busy minute make it missed; a failed run in any round is never met."""
    from bench.fleet import targets

    def doc(pairs: list[tuple[float, float]], codes: tuple[int, int] = (0, 0)) -> dict:
        run = {"clusters": 16, "workers": 16, "wall_seconds": pairs[0][1],
               "cpu_seconds": {"pytest": None, "sim": None}}
        return {"time_scale": 0.05, "one": {"wall_seconds": pairs[0][0]}, "fleet": [run],
                "rounds": [{"one": a, "fleet": b, "exit_codes": list(codes),
                            "fleet_cpu": {"pytest": 30.0, "sim": 14.0}} for a, b in pairs],
                "broken": {"verdict": [], "scenario": "ebs-attach-fails", "clusters": 15}}

    quiet_first = targets(doc([(26.0, 32.0), (26.0, 36.5), (26.0, 37.0)]), 2)
    (name, measured, verdict) = quiet_first[0]
    assert "median of 3 rounds" in name and verdict == "NOT MET"
    assert measured.startswith("1.40 x") and "1.23-1.42 x" in measured, measured
    assert "32.0/26.0 s (CPU 44 s)" in measured, measured
    assert quiet_first[1][2] == "met"  # the first round's own line, as before
    (_, measured, verdict) = targets(doc([(26.0, 33.0), (26.0, 33.5), (26.0, 40.0)]), 2)[0]
    assert verdict == "met" and measured.startswith("1.29 x"), measured
    (_, measured, verdict) = targets(doc([(26.0, 33.0), (26.0, 33.5)], (0, 1)), 2)[0]
    assert verdict == "NOT MET" and "a run failed" in measured
    assert "median" not in targets(doc([(26.0, 33.0)]), 2)[0][0]  # one round: as before
