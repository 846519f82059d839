"""One cluster's catalog on the controlplane profile, and what it cost there.

`run` starts a fresh control plane of one cluster (`ControlPlaneProcess`; the binaries
must be built already: building is not part of what is measured), runs the suites
against it in a subprocess with `--profile controlplane`, and reports the same
figures as the embedded cluster's 1-cluster run beside it: wall time, CPU and API
requests.

- CPU: user + system seconds of the pytest process (and any workers), plus those of
  every process of the control plane during the run - the supervisor and everything
  under it (etcd, the API server, controllers, scheduler, stream server, node agent
  and its moto, CSI driver and sidecars), read from /proc before and after.
- API requests: the API server's own `apiserver_request_total` (its `/metrics`),
  summed over every label, before and after: every client's requests - the control
  plane's controllers and scheduler, the node agent's heartbeats and status writes,
  the CSI sidecars - not only the suite's. The suite's alone are counted from the
  API server's audit log, which logs the admin user only (the suite's identity; every
  other component has its own, `winstor.targets.controlplane.pki`); the two scrapes
  of `/metrics` are left out. The embedded cluster's controllers are in-process, so
  there both counts are the suite's.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from winstor.cluster.kube import Api
from winstor.targets.controlplane import build
from winstor.targets.controlplane.process import ControlPlaneProcess

from .catalog import DEFAULT_SCALE, ROOT, process_cpu
from .simmetrics import parse

REQUESTS = "apiserver_request_total"


def binaries_built() -> bool:
    """Whether every binary is in the cache (the bench never starts a 20-minute build)."""
    try:
        bin_dir = build.cache_dir(build.default_module_dir()) / "bin"
    except build.BuildError:
        return False
    return all(os.access(bin_dir / c.binary, os.X_OK) for c in build.COMPONENTS)


def tree_cpu(root: int) -> float:
    """CPU seconds of `root` and every living process under it (Linux /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            parents[int(entry.name)] = int(fields[1])
    members, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        for pid, ppid in parents.items():
            if ppid == parent and pid not in members:
                members.add(pid)
                frontier.append(pid)
    return sum(process_cpu(pid) or 0.0 for pid in members)


def request_total(api: Api) -> int:
    samples = parse(api.raw("GET", "/metrics", stream=True).data.decode())
    return int(sum(v for (name, _), v in samples.items() if name == REQUESTS))


def suite_requests(audit_log: Path, since_line: int) -> tuple[int, dict[str, int]]:
    """(requests, by "VERB resource") of the admin user after line `since_line`,
    `/metrics` left out."""
    try:
        lines = audit_log.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return 0, {}
    by: dict[str, int] = {}
    for line in lines[since_line:]:
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if str(event.get("requestURI", "")).startswith("/metrics"):
            continue
        ref = event.get("objectRef") or {}
        what = ref.get("resource") or event.get("requestURI", "?").split("?")[0]
        if ref.get("subresource"):
            what += "/" + ref["subresource"]
        key = f"{str(event.get('verb', '?')).upper()} {what}"
        by[key] = by.get(key, 0) + 1
    return sum(by.values()), by


def outcomes(pytest_output: str) -> str:
    """pytest's closing counts ("24 passed, 1 failed, 4 skipped") from a run's output."""
    import re

    closing = [line for line in pytest_output.splitlines()
               if re.search(r"\d+ (passed|failed|skipped|errors?)\b.* in [\d.]+s", line)]
    found = re.findall(r"(\d+) (passed|failed|skipped|errors?)\b", closing[-1] if closing
                       else "")
    return ", ".join(f"{n} {what}" for n, what in found)


def _lines(path: Path) -> int:
    try:
        return len(path.read_text(encoding="utf-8", errors="replace").splitlines())
    except OSError:
        return 0


@dataclass
class ControlPlaneRun:
    wall: float
    exit_code: int
    cpu_pytest: float
    cpu_cluster: float
    requests_all: int
    requests_suite: int
    requests_by: dict[str, int]
    start_seconds: float
    release: str | None
    time_scale: float
    tail: str = ""

    def summary(self) -> dict[str, Any]:
        return {"wall_seconds": round(self.wall, 3), "exit_code": self.exit_code,
                "cpu_seconds": {"pytest": round(self.cpu_pytest, 3),
                                "cluster": round(self.cpu_cluster, 3)},
                "requests_all": self.requests_all, "requests_suite": self.requests_suite,
                "requests_by": dict(sorted(self.requests_by.items(), key=lambda kv: -kv[1])),
                "start_seconds": round(self.start_seconds, 3), "release": self.release,
                "time_scale": self.time_scale, "checks": outcomes(self.tail),
                "tail": self.tail}


def run(time_scale: float = DEFAULT_SCALE, timeouts: str = "sim") -> ControlPlaneRun:
    """The 1-cluster catalog against a fresh control plane (built binaries required)."""
    cp = ControlPlaneProcess(clusters=1, time_scale=time_scale)
    began = time.monotonic()
    cp.start(progress=lambda _line: None)
    start_seconds = time.monotonic() - began
    try:
        context = cp.contexts[0]
        api = Api.from_kubeconfig(str(cp.kubeconfig), context)
        audit = Path(cp.info["clusters"][context]["audit_log"])
        supervisor = cp.pid
        assert supervisor is not None
        audit_before, all_before = _lines(audit), request_total(api)
        cpu_before = tree_cpu(supervisor)
        with tempfile.TemporaryDirectory(prefix="winstor-bench-") as work:
            env = {**os.environ, **cp.aws_env, "WINSTOR_REPORT_DIR": str(Path(work) / "r")}
            env.pop("WINSTOR_WAIT_STRATEGY", None)
            args = [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly",
                    "--profile", "controlplane", f"--kubeconfig={cp.kubeconfig}",
                    "--context", context, "--timeouts", timeouts]
            children = resource.getrusage(resource.RUSAGE_CHILDREN)
            started = time.monotonic()
            proc = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True)
            wall = time.monotonic() - started
            done = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu_cluster = tree_cpu(supervisor) - cpu_before
        all_after = request_total(api)
        suite, by = suite_requests(audit, audit_before)
        return ControlPlaneRun(
            wall, proc.returncode,
            (done.ru_utime + done.ru_stime) - (children.ru_utime + children.ru_stime),
            cpu_cluster, all_after - all_before - 1, suite, by, start_seconds,
            cp.info.get("release"), time_scale, (proc.stdout + proc.stderr)[-3000:])
    finally:
        cp.stop()
