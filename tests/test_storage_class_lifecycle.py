"""`gp2-windows` on clusters that already have one: verified with a diff, and
never removed by a run that did not create it."""

from __future__ import annotations

from pathlib import Path

from kubernetes import client

from helpers import run_suite
from inspect_cluster import api_client, leftovers


def test_mismatched_existing_class_fails_with_a_diff_and_is_kept(sim_factory,
                                                                 tmp_path: Path) -> None:
    sim = sim_factory(1, [])
    storage = client.StorageV1Api(api_client(sim))
    storage.create_storage_class(client.V1StorageClass(
        metadata=client.V1ObjectMeta(name="gp2-windows"), provisioner="kubernetes.io/aws-ebs",
        parameters={"type": "gp2", "fsType": "ext4"},
        volume_binding_mode="WaitForFirstConsumer"))
    result = run_suite([f"--kubeconfig={sim.kubeconfig}", "--context", "sim-1", "-k",
                        "SC-WINDOWS-01 or SC-DEFAULT-01"], tmp_path, env=sim.aws_env)
    assert result.outcomes == {"sim-1:SC-WINDOWS-01": "failed", "sim-1:SC-DEFAULT-01": "passed"}
    message = result.messages["sim-1:SC-WINDOWS-01"]
    assert "differs from the seed: parameters.fsType: want 'ntfs', have 'ext4'" in message
    kept = storage.read_storage_class("gp2-windows")
    assert kept.parameters["fsType"] == "ext4" and not (kept.metadata.labels or {})
    assert leftovers(sim) == []


def test_class_created_by_the_run_is_removed_by_it(sim_factory, tmp_path: Path) -> None:
    sim = sim_factory(1, [])
    storage = client.StorageV1Api(api_client(sim))
    result = run_suite([f"--kubeconfig={sim.kubeconfig}", "--context", "sim-1", "-k",
                        "SC-WINDOWS-01"], tmp_path, env=sim.aws_env)
    assert result.outcomes == {"sim-1:SC-WINDOWS-01": "passed"}
    assert "gp2-windows" not in [c.metadata.name for c in storage.list_storage_class().items]
