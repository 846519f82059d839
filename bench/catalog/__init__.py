"""The full catalog against a fresh embedded cluster, and what it cost there.

`run_catalog` starts `winstor sim up` with N clusters (and any scenarios),
runs the suites against it in a subprocess - serial or with `-n` - and reads
each cluster's `/metrics` before and after (see `simmetrics`). Optionally it
watches the clusters' events and records when each check failed, for the
fault-detection benchmark.

`python -m bench.catalog [--clusters 1 2 4]` is `python -m bench --parts
catalog`: the catalog part of the benchmark table alone (`__main__.py` beside
this file, so that this part, like every part, never imports the driver).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from winstor.cluster.kube import Api
from winstor.targets.embedded import SimProcess

from ..eventlog import EventLog
from ..failclock import ENV as FAILCLOCK_ENV
from ..simmetrics import Costs, costs, scrape

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SCALE = 0.002  # what `winstor sim up` and the suite's own sim use


@dataclass
class CatalogRun:
    clusters: int
    workers: int
    scenarios: list[str]
    strategy: str  # watch (winstor's waits) or poll (the baseline)
    time_scale: float
    wall: float
    exit_code: int
    costs: dict[str, Costs]
    failures: list[dict[str, Any]] = field(default_factory=list)
    events: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    event_errors: dict[str, str] = field(default_factory=dict)
    tail: str = ""
    cpu_pytest: float = 0.0  # user + system seconds of pytest and its xdist workers
    cpu_sim: float | None = None  # of the embedded cluster meanwhile (None: not on Linux)

    def summary(self) -> dict[str, Any]:
        return {"clusters": self.clusters, "workers": self.workers, "scenarios": self.scenarios,
                "strategy": self.strategy, "time_scale": self.time_scale,
                "wall_seconds": round(self.wall, 3),
                "exit_code": self.exit_code,
                "cpu_seconds": {"pytest": round(self.cpu_pytest, 3),
                                "sim": None if self.cpu_sim is None else round(self.cpu_sim, 3)},
                "per_cluster": {c: vars(v) for c, v in self.costs.items()}}


def run_catalog(clusters: int, workers: int = 1, *, scenarios: tuple[str, ...] = (),
                env: dict[str, str] | None = None, strategy: str = "watch",
                record_failures: bool = False, pytest_args: tuple[str, ...] = (),
                timeouts: str = "sim", time_scale: float = DEFAULT_SCALE) -> CatalogRun:
    """One run of the catalog against a fresh sim; `strategy` poll needs `env` to
    carry the poll interval (see `bench.polling`)."""
    sim = SimProcess(clusters, list(scenarios), time_scale=time_scale)
    sim.start()
    logs: dict[str, EventLog] = {}
    try:
        apis = {c: Api.from_kubeconfig(str(sim.kubeconfig), c) for c in sim.contexts}
        if record_failures:
            for c in sim.contexts:
                logs[c] = EventLog(Api.from_kubeconfig(str(sim.kubeconfig), c))
                logs[c].start_and_wait()
        before = {c: scrape(api) for c, api in apis.items()}
        contexts = [a for c in sim.contexts for a in ("--context", c)]
        with tempfile.TemporaryDirectory(prefix="winstor-bench-") as work:
            clock = Path(work) / "failures.jsonl"
            run_env = {**os.environ, **sim.aws_env, "WINSTOR_REPORT_DIR": str(Path(work) / "r"),
                       **(env or {})}
            run_env.pop("WINSTOR_WAIT_STRATEGY", None)
            if strategy != "watch":
                run_env["WINSTOR_WAIT_STRATEGY"] = strategy
            args = [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly",
                    f"--kubeconfig={sim.kubeconfig}", *contexts, "--timeouts", timeouts,
                    *pytest_args]
            if record_failures:
                run_env[FAILCLOCK_ENV] = str(clock)
                args += ["-p", "bench.failclock"]
            if workers > 1:
                args += ["-n", str(workers)]
            sim_cpu = process_cpu(sim.proc.pid) if sim.proc else None
            children = resource.getrusage(resource.RUSAGE_CHILDREN)
            started = time.monotonic()
            proc = subprocess.run(args, cwd=ROOT, env=run_env, capture_output=True, text=True)
            wall = time.monotonic() - started
            done = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu_pytest = (done.ru_utime + done.ru_stime) - (children.ru_utime + children.ru_stime)
            sim_after = process_cpu(sim.proc.pid) if sim.proc else None
            failures = [json.loads(line) for line in clock.read_text().splitlines()
                        if line.strip()] if clock.exists() else []
        for log in logs.values():
            log.stop()
        after = {c: scrape(api) for c, api in apis.items()}
        return CatalogRun(
            clusters, workers, list(scenarios), strategy, time_scale, wall, proc.returncode,
            {c: costs(c, before[c], after[c]) for c in sim.contexts}, failures,
            {c: log.sorted() for c, log in logs.items()},
            {c: log.error for c, log in logs.items() if log.error},
            (proc.stdout + proc.stderr)[-3000:], cpu_pytest,
            None if sim_cpu is None or sim_after is None else sim_after - sim_cpu)
    finally:
        for log in logs.values():
            log.stop()
        sim.stop()


def process_cpu(pid: int) -> float | None:
    """User + system CPU seconds a running process has used so far (Linux /proc), or None.
    The pytest run's own CPU is read from RUSAGE_CHILDREN: its workers are waited for, so
    theirs is included."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
