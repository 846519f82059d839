"""Ctrl-C in the middle of a run still removes what the run created."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from kubernetes import client

from helpers import ROOT, eventually
from inspect_cluster import api_client, leftovers


def _start_run(sim, tmp_path: Path) -> tuple[subprocess.Popen[str], dict[str, str]]:
    """Start a suite run and return once it has real objects out there: a running pod."""
    v1 = client.CoreV1Api(api_client(sim))
    env = {**os.environ, **sim.aws_env, "WINSTOR_REPORT_DIR": str(tmp_path / "reports")}
    proc = subprocess.Popen([sys.executable, "-m", "pytest", "-q",
                             f"--kubeconfig={sim.kubeconfig}", "--context", "sim-1"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        eventually(lambda: any(p.status.phase == "Running" for p in
                               v1.list_pod_for_all_namespaces(
                                   label_selector="app.kubernetes.io/managed-by=winstor").items),
                   timeout=90, every=0.05)
    except AssertionError:
        proc.kill()
        raise
    return proc, env


def test_sigint_mid_run_leaves_nothing(sim_factory, tmp_path: Path) -> None:
    sim = sim_factory(1, [])
    proc, _ = _start_run(sim, tmp_path)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert "KeyboardInterrupt" in out, out[-2000:]
    assert leftovers(sim) == [], out[-3000:]


def test_second_sigint_stops_at_once_and_says_what_is_left(sim_factory,
                                                           tmp_path: Path) -> None:
    # A slower cluster (a tenth of EKS time) so that teardown is still going
    # when the second Ctrl-C arrives.
    from winstor.targets.embedded import SimProcess
    sim = SimProcess(1, [], time_scale=0.02)
    sim.start()
    try:
        proc, env = _start_run(sim, tmp_path)
        proc.send_signal(signal.SIGINT)
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 130, out[-2000:]
        assert "interrupted again: stopping now" in out
        assert "winstor janitor --run" in out
        run_id = out.split("winstor janitor --run ", 1)[1].split()[0]
        janitor = subprocess.run([sys.executable, "-m", "winstor", "janitor", "--run", run_id,
                                  f"--kubeconfig={sim.kubeconfig}"], env=env,
                                 capture_output=True, text=True, timeout=120)
        assert janitor.returncode == 0, janitor.stdout + janitor.stderr
        assert leftovers(sim) == []
    finally:
        sim.stop()
