"""A pytest-xdist worker killed mid-run: the lost checks are reported and the
controller sweeps the run's objects by its run label - and nothing else."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

from kubernetes import client

from helpers import run_suite
from inspect_cluster import api_client, leftovers
from test_scenarios import ALL

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
    assert "crashed" in result.output, result.output[-3000:]  # pytest-xdist's own line
    # winstor's own record of the lost check: in the run's results.json it is an
    # error (a check that did not finish, not a verdict) - never passed, never missing
    # - and the run's junit.xml (winstor's writer) carries the crash as its reason.
    run_dir = tmp_path / "reports" / "latest"
    doc = json.loads((run_dir / "results.json").read_text())
    outcomes = {(c["cluster"], c["id"]): c["outcome"] for c in doc["checks"]}
    assert set(outcomes) == {("sim-1", c) for c in ALL}
    assert outcomes[("sim-1", "EBS-PERSIST-01")] == "error", doc["checks"]
    assert doc["summary"]["error"] >= 1 and doc["summary"]["total"] == len(ALL)
    lost = [case for case in ET.parse(run_dir / "junit.xml").getroot().iter("testcase")
            if "[sim-1:EBS-PERSIST-01]" in case.get("name", "")]
    assert any("crashed" in (child.get("message") or "") for case in lost for child in case
               if child.tag in ("error", "failure")), ET.tostring(lost[0]) if lost else lost
    assert "swept run" in result.output
    assert leftovers(sim) == [], result.output[-3000:]
    assert "not-winstor" in [n.metadata.name for n in v1.list_namespace().items]
