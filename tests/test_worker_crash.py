"""A pytest-xdist worker killed mid-run: the lost checks are reported and the
controller sweeps the run's objects by its run label - and nothing else."""

from __future__ import annotations

from pathlib import Path

from kubernetes import client

from helpers import run_suite
from inspect_cluster import api_client, leftovers

KILLER = '''
import os
import signal

def pytest_runtest_call(item):
    if "EBS-PERSIST-01" in item.nodeid and os.environ.get("PYTEST_XDIST_WORKER"):
        os.kill(os.getpid(), signal.SIGKILL)
'''


def test_killed_worker_is_reported_and_swept(sim_factory, tmp_path: Path) -> None:
    sim = sim_factory(1, [])
    v1 = client.CoreV1Api(api_client(sim))
    v1.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="not-winstor")))
    (tmp_path / "kill_worker.py").write_text(KILLER)
    env = {**sim.aws_env, "PYTHONPATH": str(tmp_path)}
    result = run_suite([f"--kubeconfig={sim.kubeconfig}", "--context", "sim-1", "-n", "2",
                        "-p", "kill_worker"], tmp_path, env=env)
    assert result.code != 0
    assert "crashed" in result.output, result.output[-3000:]
    assert "swept run" in result.output
    assert leftovers(sim) == [], result.output[-3000:]
    assert "not-winstor" in [n.metadata.name for n in v1.list_namespace().items]
