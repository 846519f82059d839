"""A namespace held by someone else's finalizer: the run waits a bounded time,
reports what holds it, and does not hang."""

from __future__ import annotations

from pathlib import Path

from helpers import run_suite

PLANT = '''
import pytest
from kubernetes import client, config

@pytest.hookimpl(trylast=True)
def pytest_runtest_setup(item):
    import os
    if getattr(pytest_runtest_setup, "done", False):
        return
    ns = [n for n in item.funcargs.values() if isinstance(n, str) and n.startswith("winstor-")]
    if not ns:
        return
    v1 = client.CoreV1Api(config.new_client_from_config(os.environ["PLANT_KUBECONFIG"],
                                                        context="sim-1"))
    v1.create_namespaced_config_map(ns[0], client.V1ConfigMap(metadata=client.V1ObjectMeta(
        name="held-by-someone", finalizers=["example.com/never"])))
    pytest_runtest_setup.done = True
'''


def test_stuck_namespace_is_reported_not_waited_on_forever(sim_factory, tmp_path: Path) -> None:
    sim = sim_factory(1, [])
    (tmp_path / "plant_finalizer.py").write_text(PLANT)
    timeouts = tmp_path / "timeouts.yaml"
    timeouts.write_text("base: sim\nnamespace_delete: 3\n")
    env = {**sim.aws_env, "PYTHONPATH": str(tmp_path), "PLANT_KUBECONFIG": str(sim.kubeconfig)}
    result = run_suite([f"--kubeconfig={sim.kubeconfig}", "--context", "sim-1",
                        f"--timeouts={timeouts}", "-p", "plant_finalizer", "-k", "SMB-PSA-01"],
                       tmp_path, env=env, timeout=120)
    assert result.outcomes == {"sim-1:SMB-PSA-01": "passed"}, result.output[-2000:]
    left = [ln for ln in result.output.splitlines() if "LEFT BEHIND" in ln]
    assert left, result.output[-2000:]
    assert any("still Terminating" in ln and "example.com/never" in ln for ln in left), left
